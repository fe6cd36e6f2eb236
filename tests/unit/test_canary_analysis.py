"""The canary analysis on synthetic samples: regressions caught, equal revisions pass, small samples held."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from deploy.analysis import (
    Request,
    StepResult,
    Thresholds,
    binomial_tail,
    decide,
    fisher_greater,
    http_signals,
    mann_whitney_greater,
    outcome_signals,
)

T = Thresholds(min_requests=20)


def requests_from(
    rng: random.Random, n: int, *, median_ms: float = 40.0, error_every: int = 0
) -> list[Request]:
    """n requests with log-normal latencies around median_ms; every error_every-th one a 500."""
    return [
        Request(
            500 if error_every and i % error_every == 0 else 200, median_ms * math.exp(rng.gauss(0, 0.35))
        )
        for i in range(1, n + 1)
    ]


def exact_u_tail(candidate: list[float], baseline: list[float]) -> tuple[float, float]:
    """U by its definition (pairs where the candidate is larger, ties half) and its exact permutation tail."""

    def u_of(first: list[float], second: list[float]) -> float:
        return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in first for b in second)

    observed = u_of(candidate, baseline)
    pooled = candidate + baseline
    at_least = total = 0
    for chosen in itertools.combinations(range(len(pooled)), len(candidate)):
        first = [pooled[i] for i in chosen]
        second = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        total += 1
        at_least += u_of(first, second) >= observed
    return observed, at_least / total


@pytest.mark.parametrize("seed", range(6))
def test_mann_whitney_u_matches_its_definition_and_the_exact_permutation_tail(seed: int) -> None:
    rng = random.Random(seed)
    shift = [0.0, 0.5, 1.0][seed % 3]
    # Rounded to one decimal so that ties occur and the tie correction is exercised.
    candidate = [round(rng.gauss(shift, 1), 1) for _ in range(6)]
    baseline = [round(rng.gauss(0, 1), 1) for _ in range(7)]
    u, p = mann_whitney_greater(candidate, baseline)
    exact_u, exact_p = exact_u_tail(candidate, baseline)
    assert u == pytest.approx(exact_u)
    assert p == pytest.approx(exact_p, abs=0.04)


def test_binomial_tail_agrees_with_its_complement() -> None:
    complement = sum(math.comb(20, i) * 0.02**i * 0.98 ** (20 - i) for i in range(3))
    assert binomial_tail(3, 20, 0.02) == pytest.approx(1 - complement)
    assert binomial_tail(0, 20, 0.02) == 1.0
    assert binomial_tail(1, 20, 0.0) == 0.0


def test_fisher_exact_agrees_with_counting_every_labelling() -> None:
    # 3 of 6 candidate requests failed, 1 of 8 baseline ones: the one-sided tail counted by brute force.
    k1, n1, k2, n2 = 3, 6, 1, 8
    outcomes = [1] * (k1 + k2) + [0] * (n1 + n2 - k1 - k2)
    tails = [sum(outcomes[i] for i in chosen) >= k1 for chosen in itertools.combinations(range(n1 + n2), n1)]
    assert fisher_greater(k1, n1, k2, n2) == pytest.approx(sum(tails) / len(tails))


def test_equal_revisions_pass_in_almost_every_window() -> None:
    aborts = 0
    for seed in range(200):
        rng = random.Random(seed)
        verdict = decide(http_signals("dashboard", requests_from(rng, 60), requests_from(rng, 240), T))
        aborts += verdict.decision == "abort"
        assert verdict.decision in ("advance", "abort")
    # alpha = 0.001 per test, two tests per window: a handful of aborts in 200 would already be a bug.
    assert aborts <= 1


def test_a_share_of_failing_requests_aborts_and_says_which_signal() -> None:
    rng = random.Random(1)
    verdict = decide(
        http_signals("dashboard", requests_from(rng, 60, error_every=5), requests_from(rng, 240), T)
    )
    assert verdict.decision == "abort"
    assert [s.name for s in verdict.signals if s.verdict == "fail"] == ["http error rate"]
    assert "dashboard http error rate" in verdict.reasons[0]


def test_tripled_latency_under_the_slo_aborts_on_latency_alone() -> None:
    rng = random.Random(2)
    candidate, baseline = requests_from(rng, 40, median_ms=120), requests_from(rng, 160, median_ms=40)
    verdict = decide(http_signals("thumbnailer", candidate, baseline, T))
    assert verdict.decision == "abort"
    assert [s.name for s in verdict.signals if s.verdict == "fail"] == ["http latency ms"]
    assert max(r.ms for r in candidate) < T.max_p99_ms


def test_a_candidate_slower_within_the_allowed_factor_is_not_aborted() -> None:
    rng = random.Random(3)
    verdict = decide(
        http_signals(
            "thumbnailer", requests_from(rng, 60, median_ms=44), requests_from(rng, 240, median_ms=40), T
        )
    )
    assert verdict.decision == "advance"


def test_a_window_with_too_few_requests_holds_and_is_never_a_pass() -> None:
    rng = random.Random(4)
    verdict = decide(http_signals("dashboard", requests_from(rng, 5), requests_from(rng, 240), T))
    assert verdict.decision == "hold"
    assert {s.verdict for s in verdict.signals} == {"inconclusive"}
    assert decide([]).decision == "hold"


def test_errors_above_the_slo_abort_even_when_the_baseline_is_as_bad() -> None:
    rng = random.Random(5)
    verdict = decide(
        http_signals(
            "dashboard", requests_from(rng, 100, error_every=4), requests_from(rng, 100, error_every=4), T
        )
    )
    assert verdict.decision == "abort"


def test_business_outcome_catches_retries_the_http_view_cannot_see() -> None:
    done = [StepResult("done", 0.3, 1) for _ in range(30)]
    retried = [StepResult("done", 0.3, 2 if i % 3 == 0 else 1) for i in range(30)]
    verdict = decide(outcome_signals("exif", retried, done, T, deadline_s=20))
    assert verdict.decision == "abort"
    assert [s.name for s in verdict.signals if s.verdict == "fail"] == ["steps retried"]
    assert decide(outcome_signals("exif", done, done, T, deadline_s=20)).decision == "advance"


def test_failed_steps_abort() -> None:
    done = [StepResult("done", 0.3, 1) for _ in range(30)]
    failing = [StepResult("failed" if i % 4 == 0 else "done", 0.3, 1) for i in range(30)]
    verdict = decide(outcome_signals("analysis", failing, done, T, deadline_s=20))
    assert [s.name for s in verdict.signals if s.verdict == "fail"] == ["steps failed"]


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        Thresholds(alpha=0)
