"""`python -m benchmarks [NAME ...]`: run the named benchmarks (default: all) one after the other.

Names: stack_start (starts and stops its own stacks), pipeline_latency, suite_time,
scenario_overhead, load, time_to_red, detection_latency (on the drills' stack, started here once if
none runs). Each writes its JSON and PNGs under reports/benchmarks/; the exit code is the worst of theirs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from benchmarks import (
    detection_latency,
    load,
    pipeline_latency,
    scenario_overhead,
    stack_start,
    suite_time,
    time_to_red,
)
from stack.handle import StackUnavailable, drill_state_file, local_stack

# Cold start first: it must not find the drills' stack running (it measures its own).
BENCHMARKS: dict[str, Callable[[Sequence[str]], int]] = {
    "stack_start": stack_start.main,
    "pipeline_latency": pipeline_latency.main,
    "suite_time": suite_time.main,
    "scenario_overhead": scenario_overhead.main,
    "load": load.main,
    "time_to_red": time_to_red.main,
    "detection_latency": detection_latency.main,
}
ON_THE_STACK = tuple(name for name in BENCHMARKS if name != "stack_start")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks; the stack they share is started once and stopped at the end."""
    names = list(argv if argv is not None else sys.argv[1:]) or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"benchmarks: unknown {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    codes = {name: BENCHMARKS[name]([]) for name in names if name not in ON_THE_STACK}
    shared = [n for n in names if n in ON_THE_STACK]
    if shared:
        state_file = drill_state_file(None)
        try:
            with local_stack(state_file) as control:
                for name in shared:
                    print(f"== {name}", flush=True)
                    codes[name] = BENCHMARKS[name](["--state-file", str(control.state_path)])
        except StackUnavailable as exc:
            print(f"benchmarks: {exc}", file=sys.stderr)
            return 1
    for name, code in codes.items():
        print(f"benchmarks: {name} {'ok' if code == 0 else f'exit {code}'}")
    return max(codes.values(), default=0)


if __name__ == "__main__":
    sys.exit(main())
