"""Canary analysis: a candidate revision judged against its baseline over the same window.

Pure functions on samples: no stack, no cloud. Every signal has an absolute threshold (an SLO) and a
relative one (not worse than the baseline by more than a margin), each decided by a one-sided test
at level `alpha`, so chance alone rarely aborts a clean release. Too few samples is "inconclusive",
never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Verdict = Literal["pass", "fail", "inconclusive"]
Decision = Literal["advance", "hold", "abort"]


@dataclass(frozen=True)
class Thresholds:
    """The SLOs and margins a candidate is held to (environments.toml's [environments.X.canary])."""

    # Requests (or workflow steps) a revision must serve in a window before it is judged at all.
    min_requests: int = 20
    # HTTP: share of 5xx allowed (SLO), and how much worse than the baseline's share may be tolerated.
    max_error_rate: float = 0.02
    error_margin: float = 0.02
    # Latency: p99 SLO in ms, and the factor by which the candidate may be slower than the baseline.
    max_p99_ms: float = 5000.0
    latency_factor: float = 1.5
    # The bake's factor: its baseline is another window (earlier, other load, a smaller bucket), and
    # 60 clean canary runs on 2 cores showed good agents up to 2.5x slower across windows than within.
    bake_latency_factor: float = 4.0
    # Business outcome: share of steps not done (failed) and of steps needing more than one attempt.
    max_failure_rate: float = 0.02
    max_retry_rate: float = 0.05
    # Significance of every one-sided test: the chance a clean candidate fails one signal by luck.
    alpha: float = 0.001

    def __post_init__(self) -> None:
        if (
            self.min_requests < 1
            or not 0 < self.alpha < 1
            or min(self.latency_factor, self.bake_latency_factor) < 1
        ):
            raise ValueError("canary thresholds: min_requests >= 1, 0 < alpha < 1, latency factors >= 1")


@dataclass(frozen=True)
class Request:
    """One HTTP request a revision answered: its status and duration."""

    status: int
    ms: float

    @property
    def failed(self) -> bool:
        """A server error (or no answer, counted by the router as 502) is a failed request."""
        return self.status >= 500


@dataclass(frozen=True)
class StepResult:
    """One workflow step a revision of an agent ran, read from the workflow document."""

    status: str
    seconds: float | None
    attempts: int

    @property
    def failed(self) -> bool:
        """The step ended failed (the agent gave up on its input)."""
        return self.status == "failed"


@dataclass
class Signal:
    """One signal of one service: both revisions' figures, the rule, and its verdict."""

    service: str
    name: str
    candidate: float | None
    baseline: float | None
    rule: str
    verdict: Verdict
    samples: tuple[int, int] = (0, 0)
    detail: str = ""

    def line(self) -> str:
        """One line for the console and the run record."""

        def shown(value: float | None) -> str:
            return "-" if value is None else f"{value:.4g}"

        figures = f"candidate {shown(self.candidate)} vs baseline {shown(self.baseline)}"
        where = f"{self.service} {self.name}: {figures}"
        return f"{where} (n={self.samples[0]}/{self.samples[1]}; {self.rule}) -> {self.verdict}" + (
            f": {self.detail}" if self.detail else ""
        )


@dataclass
class StepVerdict:
    """The verdict of one analysis: every signal and the decision they make together."""

    decision: Decision
    signals: list[Signal] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """The failing signals (abort) or the inconclusive ones (hold), one line each."""
        wanted: Verdict = "fail" if self.decision == "abort" else "inconclusive"
        return [s.line() for s in self.signals if s.verdict == wanted]

    def as_dict(self) -> dict[str, Any]:
        """The verdict as the run record stores it."""
        return {"decision": self.decision, "signals": [asdict(s) for s in self.signals]}


# -- statistics -----------------------------------------------------------------------------------
def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of values (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how surprising k failures in n are if the true rate is p."""
    if k <= 0:
        return 1.0
    if p <= 0:
        return 0.0
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def fisher_greater(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided Fisher exact test: P(first group has >= k1 failures) given the margins (rate1 > rate2)."""
    total, failures = n1 + n2, k1 + k2
    denominator = math.comb(total, n1)
    upper = min(n1, failures)
    return min(
        1.0,
        sum(math.comb(failures, i) * math.comb(total - failures, n1 - i) for i in range(k1, upper + 1))
        / denominator,
    )


def mann_whitney_greater(candidate: Sequence[float], baseline: Sequence[float]) -> tuple[float, float]:
    """(U, one-sided p) that candidate values tend to be larger than baseline's (normal approximation).

    Ties get mid-ranks and the variance is tie-corrected; a continuity correction of 0.5 keeps the
    approximation conservative for the small windows a canary sees.
    """
    n1, n2 = len(candidate), len(baseline)
    if not n1 or not n2:
        raise ValueError("Mann-Whitney U needs two non-empty samples")
    pooled = sorted([(v, 0) for v in candidate] + [(v, 1) for v in baseline])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    start = 0
    while start < len(pooled):
        end = start
        while end + 1 < len(pooled) and pooled[end + 1][0] == pooled[start][0]:
            end += 1
        for position in range(start, end + 1):
            ranks[position] = (start + end) / 2 + 1
        size = end - start + 1
        ties += size**3 - size
        start = end + 1
    rank_sum = sum(r for r, (_, group) in zip(ranks, pooled, strict=True) if group == 0)
    u = rank_sum - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return u, 1.0 if u <= n1 * n2 / 2 else 0.0
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return u, 0.5 * math.erfc(z / math.sqrt(2))


# -- signals ----------------------------------------------------------------------------------------
def _rate_signal(
    service: str,
    name: str,
    failed: tuple[int, int],
    baseline: tuple[int, int],
    slo: float,
    margin: float,
    t: Thresholds,
) -> Signal:
    """A failure-share signal: fails when significantly above the SLO, or above the baseline + margin."""
    (k1, n1), (k2, n2) = failed, baseline
    rate = k1 / n1 if n1 else None
    base = k2 / n2 if n2 else None
    rule = f"<= {slo:.0%} and <= baseline + {margin:.0%}, one-sided p < {t.alpha}"
    if n1 < t.min_requests:
        return Signal(
            service, name, rate, base, rule, "inconclusive", (n1, n2), f"fewer than {t.min_requests}"
        )
    assert rate is not None
    p_slo = binomial_tail(k1, n1, slo)
    if p_slo < t.alpha:
        return Signal(service, name, rate, base, rule, "fail", (n1, n2), f"above the SLO (p={p_slo:.2g})")
    if n2 >= t.min_requests and base is not None and rate > base + margin:
        p_rel = fisher_greater(k1, n1, k2, n2)
        if p_rel < t.alpha:
            return Signal(
                service, name, rate, base, rule, "fail", (n1, n2), f"worse than baseline (p={p_rel:.2g})"
            )
    return Signal(service, name, rate, base, rule, "pass", (n1, n2))


def _latency_signal(
    service: str, name: str, candidate: Sequence[float], baseline: Sequence[float], slo: float, t: Thresholds
) -> Signal:
    """A duration signal: p99 under the SLO, and not stochastically slower than factor x the baseline."""
    p99, base99 = percentile(candidate, 0.99), percentile(baseline, 0.99)
    rule = (
        f"p99 <= {slo:g} and not slower than {t.latency_factor:g}x baseline (Mann-Whitney U, p < {t.alpha})"
    )
    counts = (len(candidate), len(baseline))
    if len(candidate) < t.min_requests:
        return Signal(
            service, name, p99, base99, rule, "inconclusive", counts, f"fewer than {t.min_requests}"
        )
    assert p99 is not None
    if len(baseline) >= t.min_requests:
        # The baseline scaled by the allowed factor: a candidate only "a bit slower" is no regression.
        _, p = mann_whitney_greater(candidate, [v * t.latency_factor for v in baseline])
        if p < t.alpha:
            median, base_median = percentile(candidate, 0.5), percentile(baseline, 0.5)
            return Signal(
                service,
                name,
                p99,
                base99,
                rule,
                "fail",
                counts,
                f"median {median:.4g} vs {base_median:.4g}: slower than {t.latency_factor:g}x (p={p:.2g})",
            )
    if p99 > slo:
        # The p99 of a small window is one request: the SLO fails only when the tail is surely over 1 %.
        over = sum(1 for v in candidate if v > slo)
        p_over = binomial_tail(over, len(candidate), 0.01)
        if p_over < t.alpha:
            return Signal(
                service, name, p99, base99, rule, "fail", counts, f"{over} above {slo:g} (p={p_over:.2g})"
            )
    return Signal(service, name, p99, base99, rule, "pass", counts)


def http_signals(
    service: str, candidate: Sequence[Request], baseline: Sequence[Request], t: Thresholds
) -> list[Signal]:
    """Success rate and latency of one service's two revisions in one window."""
    return [
        _rate_signal(
            service,
            "http error rate",
            (sum(r.failed for r in candidate), len(candidate)),
            (sum(r.failed for r in baseline), len(baseline)),
            t.max_error_rate,
            t.error_margin,
            t,
        ),
        _latency_signal(
            service,
            "http latency ms",
            [r.ms for r in candidate if not r.failed],
            [r.ms for r in baseline if not r.failed],
            t.max_p99_ms,
            t,
        ),
    ]


def outcome_signals(
    agent: str,
    candidate: Sequence[StepResult],
    baseline: Sequence[StepResult],
    t: Thresholds,
    deadline_s: float,
) -> list[Signal]:
    """The business outcome of one agent's two revisions: steps failed, retried, and their durations."""
    finished = [s for s in candidate if s.status in ("done", "failed", "rejected")]
    base_finished = [s for s in baseline if s.status in ("done", "failed", "rejected")]
    return [
        _rate_signal(
            agent,
            "steps failed",
            (sum(s.failed for s in finished), len(finished)),
            (sum(s.failed for s in base_finished), len(base_finished)),
            t.max_failure_rate,
            t.error_margin,
            t,
        ),
        _rate_signal(
            agent,
            "steps retried",
            (sum(s.attempts > 1 for s in finished), len(finished)),
            (sum(s.attempts > 1 for s in base_finished), len(base_finished)),
            t.max_retry_rate,
            t.error_margin,
            t,
        ),
        _latency_signal(
            agent,
            "step seconds",
            [s.seconds for s in finished if s.seconds is not None],
            [s.seconds for s in base_finished if s.seconds is not None],
            deadline_s,
            t,
        ),
    ]


def decide(signals: Iterable[Signal]) -> StepVerdict:
    """Abort on any failed signal, hold while any is inconclusive, advance only when all pass."""
    listed = list(signals)
    verdicts = {s.verdict for s in listed}
    decision: Decision = (
        "abort" if "fail" in verdicts else "hold" if "inconclusive" in verdicts or not listed else "advance"
    )
    return StepVerdict(decision, listed)
