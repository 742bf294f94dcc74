"""Robustness statistics against hand-computed answers: AlgoPerf profiles and score, Demon top-k finishes, the exact
expected best of k (also by brute force over every k-subset), seed statistics, batch-size view, failure accounting."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from autoaccel.analysis import (
    algoperf_times,
    batch_size_robustness,
    benchmark_score,
    expected_best_of_k,
    failure_accounting,
    performance_profile,
    seed_robustness,
    top_k_finishes,
)
from autoaccel.tracking import STATUSES

INF = math.inf
# 3 algorithms × 4 problems. Problem 2 is missed by C, problem 3 by A, problem 4 by everyone.
TIMES = {
    "A": [10.0, 30.0, pd.NA, INF],
    "B": [20.0, 15.0, 50.0, float("nan")],
    "C": [40.0, INF, 25.0, None],
}
# Ratios t / min_a t per problem (an all-miss problem is ∞ for all):
#   A: 10/10 = 1, 30/15 = 2, ∞, ∞
#   B: 20/10 = 2, 15/15 = 1, 50/25 = 2, ∞
#   C: 40/10 = 4, ∞, 25/25 = 1, ∞
RATIOS = {"A": [1, 2, INF, INF], "B": [2, 1, 2, INF], "C": [4, INF, 1, INF]}
# ρ(τ) = share of the 4 problems with ratio ≤ τ, at τ = 1, 1.5, 2, 3, 4
RHO = {"A": [1 / 4, 1 / 4, 2 / 4, 2 / 4, 2 / 4], "B": [1 / 4, 1 / 4, 3 / 4, 3 / 4, 3 / 4], "C": [1 / 4] * 4 + [2 / 4]}
# Score B = Σ_p max(0, 4 − r) / (4 · (4 − 1)):
#   A: (3 + 2) / 12 = 5/12;  B: (2 + 3 + 2) / 12 = 7/12;  C: (0 + 3) / 12 = 3/12
SCORE = {"A": 5 / 12, "B": 7 / 12, "C": 3 / 12}


def test_performance_profile_known_answer() -> None:
    profile = performance_profile(TIMES, taus=[1, 1.5, 2, 3, 4])
    assert profile["n_problems"] == 4
    assert profile["unsolved"] == [3]
    for name in TIMES:
        np.testing.assert_array_equal(profile["ratios"][name], RATIOS[name])
        np.testing.assert_allclose(profile["rho"][name], RHO[name])


def test_performance_profile_default_grid_and_dataframe_input() -> None:
    profile = performance_profile(pd.DataFrame(TIMES))
    assert profile["tau"][0] == 1.0 and profile["tau"][-1] == 4.0
    for name in TIMES:
        assert np.all(np.diff(profile["rho"][name]) >= 0)  # a profile never decreases
        assert profile["rho"][name][-1] == RHO[name][-1]


def test_benchmark_score_known_answer_and_matches_the_integral() -> None:
    score = benchmark_score(TIMES)
    assert score == pytest.approx(SCORE)
    # The closed form equals the normalized area under the profile (trapezoid on a fine grid, error ~ 1/grid size).
    grid = np.linspace(1, 4, 30001)
    profile = performance_profile(TIMES, taus=grid)
    for name in TIMES:
        assert np.trapezoid(profile["rho"][name], grid) / 3 == pytest.approx(SCORE[name], abs=1e-3)


def test_benchmark_score_extremes_and_tau_max() -> None:
    assert benchmark_score({"fast": [1, 2], "slow": [8, 16]}) == {"fast": 1.0, "slow": 0.0}
    # With τ_max = 2: A has ratios 1, 2 → (1 + 0) / (4 · 1) = 1/4
    assert benchmark_score(TIMES, tau_max=2)["A"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("times", "message"),
    [
        ({}, "empty"),
        ({"A": []}, "no problems"),
        ({"A": [1, 2], "B": [1]}, "same problem order"),
        ({"A": [0.0, 1.0]}, "positive"),
    ],
)
def test_profile_rejects_bad_input(times: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        performance_profile(times)
    with pytest.raises(ValueError, match=message):
        benchmark_score(times)


def test_algoperf_times_median_over_studies_of_the_fastest() -> None:
    rows = [
        # workload w1, technique A: studies' fastest 10, 8, ∞ → median 10
        ("w1", "A", 0, 10.0),
        ("w1", "A", 0, 12.0),
        ("w1", "A", 1, None),
        ("w1", "A", 1, 8.0),
        ("w1", "A", 2, None),
        # technique B: 5, ∞, ∞ → median ∞ (∞ takes part in the median)
        ("w1", "B", 0, 5.0),
        ("w1", "B", 1, None),
        ("w1", "B", 2, None),
        ("w2", "A", 0, 3.0),  # B never ran w2 → ∞
    ]
    df = pd.DataFrame(rows, columns=["workload", "technique", "study", "time_to_target_s"])
    table = algoperf_times(df, study_col="study")
    assert table.loc["w1", "A"] == 10.0
    assert table.loc["w1", "B"] == INF
    assert table.loc["w2", "A"] == 3.0 and table.loc["w2", "B"] == INF
    # Without studies every trial is one study: the fastest
    assert algoperf_times(df).loc["w1", "B"] == 5.0
    assert benchmark_score(table)["A"] == pytest.approx(1.0)


# Settings × algorithms, lower is better. s1: A and B tie for first (both rank 1, C rank 3); s2: B missing;
# s3: B and C tie for first, A third; s4: every value missing.
SCORES = pd.DataFrame(
    {"A": [1.0, 3.0, 5.0, None], "B": [1.0, None, 4.0, None], "C": [2.0, 2.0, 4.0, None]},
    index=["s1", "s2", "s3", "s4"],
)


def test_top_k_finishes_with_ties_and_missing() -> None:
    table = top_k_finishes(SCORES, k=[1, 2, 3], mode="min")
    # top-1: A in s1 → 1/4; B in s1, s3 → 2/4; C in s2, s3 → 2/4
    assert table["top_1"].to_dict() == {"A": 25.0, "B": 50.0, "C": 50.0}
    # top-2: A in s1, s2 (rank 2 behind C); B in s1, s3; C in s2, s3 (rank 3 in s1: two strictly better)
    assert table["top_2"].to_dict() == {"A": 50.0, "B": 50.0, "C": 50.0}
    # top-3: everyone with a value in s1–s3; a missing value is never a finish, even with only 2 values in s2
    assert table["top_3"].to_dict() == {"A": 75.0, "B": 50.0, "C": 75.0}
    assert (table["n_settings"] == 4).all()


def test_top_k_finishes_max_mode_and_mapping_input() -> None:
    scores = {"s1": {"A": 0.9, "B": 0.8}, "s2": {"A": 0.5, "B": 0.7}, "s3": {"B": 0.1}}
    table = top_k_finishes(scores, k=1, mode="max")
    # s1: A best; s2: B best; s3: only B has a value
    assert table["top_1"].to_dict() == pytest.approx({"A": 100 / 3, "B": 200 / 3})
    with pytest.raises(ValueError, match="empty"):
        top_k_finishes({}, k=1)
    with pytest.raises(ValueError, match="mode"):
        top_k_finishes(scores, k=1, mode="best")


VALUES = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0]


def _brute_force(values: list[float], k: int, best: type[min] | type[max]) -> float:
    subsets = list(itertools.combinations(values, k))
    return sum(best(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_expected_best_of_k_equals_brute_force_and_formula(mode: str) -> None:
    curve = expected_best_of_k(VALUES, mode=mode)
    assert list(curve.index) == list(range(1, 8))
    n = len(VALUES)
    ordered = sorted(VALUES, reverse=mode == "max")
    for k in range(1, n + 1):
        brute = _brute_force(VALUES, k, min if mode == "min" else max)
        formula = sum(v * math.comb(n - i, k - 1) / math.comb(n, k) for i, v in enumerate(ordered, start=1))
        assert curve.loc[k, "expected"] == pytest.approx(brute)
        assert curve.loc[k, "expected"] == pytest.approx(formula)
    # k = 1 is the mean, k = n the best
    assert curve.loc[1, "expected"] == pytest.approx(np.mean(VALUES))
    assert curve.loc[n, "expected"] == (min(VALUES) if mode == "min" else max(VALUES))


def test_expected_best_of_k_by_hand_with_a_failed_trial() -> None:
    # [1, 2, 3], k = 2: subsets {1,2} {1,3} {2,3} → minima 1, 1, 2 → 4/3
    assert expected_best_of_k([1, 2, 3], k=2).loc[2, "expected"] == pytest.approx(4 / 3)
    # A failed trial (None) is the worst: k = 1 can draw it alone → ∞; k = 2: {1,F} {1,3} {F,3} → 1, 1, 3 → 5/3
    curve = expected_best_of_k([1, None, 3], k=[1, 2, 3])
    assert curve.loc[1, "expected"] == INF
    assert curve.loc[2, "expected"] == pytest.approx(5 / 3)
    assert curve.loc[3, "expected"] == 1.0
    assert expected_best_of_k([0.9, float("nan")], k=2, mode="max").loc[2, "expected"] == 0.9


def test_expected_best_of_k_bootstrap_band_contains_exact() -> None:
    curve = expected_best_of_k(VALUES, mode="min", bootstrap=400, seed=0)
    assert (curve["ci_low"] <= curve["expected"]).all() and (curve["expected"] <= curve["ci_high"]).all()
    again = expected_best_of_k(VALUES, mode="min", bootstrap=400, seed=0)
    pd.testing.assert_frame_equal(curve, again)  # seeded
    high = expected_best_of_k(VALUES, mode="max", bootstrap=400, seed=1)
    assert (high["ci_low"] <= high["expected"]).all() and (high["expected"] <= high["ci_high"]).all()


def test_expected_best_of_k_large_n_is_stable() -> None:
    values = np.random.default_rng(0).uniform(size=2000)
    curve = expected_best_of_k(values, k=[1, 10, 2000])
    # For U(0, 1) draws E[min of k] ≈ 1/(k + 1)
    assert curve.loc[10, "expected"] == pytest.approx(1 / 11, abs=0.01)
    assert curve.loc[2000, "expected"] == values.min()


@pytest.mark.parametrize(("values", "k"), [([], 1), ([1.0, 2.0], 0), ([1.0, 2.0], 3)])
def test_expected_best_of_k_rejects_bad_input(values: list[float], k: int) -> None:
    with pytest.raises(ValueError):
        expected_best_of_k(values, k=k)


def _trials() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "family": ["adam", "adam", "adam", "sgd", "anderson+adam", "anderson+adam", "anderson+adam"],
            "seed": [0, 1, 2, 0, 0, 1, 2],
            "status": ["completed", "completed", "completed", "diverged", "completed", "errored", None],
            "final_metric": [1.0, 2.0, 3.0, 5.0, 0.5, float("nan"), INF],
            "steps_to_target": [10, 20, None, None, 5, None, None],
            "budget.batch_size": [32, 32, 64, 32, 32, 32, 64],
            "final_aa_averaging_fraction": [None, None, None, None, 0.25, 0.75, None],
        }
    )


def test_seed_robustness_student_t() -> None:
    table = seed_robustness(_trials(), "final_metric").set_index("family")
    adam = table.loc["adam"]
    # [1, 2, 3]: mean 2, std 1, t_{0.975, 2} = 4.302652729911275 → 2 ± 4.3027 / √3 = 2 ± 2.48414
    assert (adam["n"], adam["n_finite"], adam["mean"], adam["std"]) == (3, 3, 2.0, 1.0)
    assert adam["ci_low"] == pytest.approx(2 - 4.302652729911275 / math.sqrt(3))
    assert adam["ci_high"] == pytest.approx(2 + 4.302652729911275 / math.sqrt(3))
    assert (adam["min"], adam["max"]) == (1.0, 3.0)
    sgd = table.loc["sgd"]
    assert sgd["n"] == 1 and sgd["mean"] == 5.0 and math.isnan(sgd["ci_low"]) and math.isnan(sgd["std"])
    anderson = table.loc["anderson+adam"]  # NaN and ∞ are failed seeds: counted, never left out of the mean
    assert (anderson["n"], anderson["n_finite"], anderson["n_nonfinite"]) == (3, 1, 2)
    assert all(math.isnan(anderson[c]) for c in ("mean", "std", "ci_low", "median", "min", "max"))
    worst = seed_robustness(_trials(), "final_metric", mode="min").set_index("family").loc["anderson+adam"]
    assert (worst["mean"], worst["median"], worst["min"], worst["max"]) == (INF, INF, 0.5, INF)  # failure = worst
    assert math.isnan(worst["std"]) and math.isnan(worst["ci_low"])
    best = seed_robustness(_trials(), "final_metric", mode="max").set_index("family").loc["anderson+adam"]
    assert (best["mean"], best["min"], best["max"]) == (-INF, -INF, 0.5)  # for accuracy the worst is −∞
    overall = seed_robustness(_trials(), "final_metric", by=None)
    assert len(overall) == 1 and overall.loc[0, "n"] == 7


def test_a_failed_seed_never_makes_a_technique_look_less_variable() -> None:
    """Two families with the same finite seeds, one of which also diverged on a fourth: left out, its spread would
    equal the other's; counted, its mean is ∞ and its spread undefined, in both tables."""
    rows = pd.DataFrame(
        {
            "family": ["steady"] * 4 + ["shaky"] * 4,
            "final_metric": [1.0, 1.1, 0.9, 1.0, 1.0, 1.1, 0.9, np.nan],
            "steps_to_target": [5] * 8,
            "budget.batch_size": [32] * 8,
        }
    )
    spread = seed_robustness(rows, mode="min").set_index("family")
    assert spread.loc["steady", "std"] > 0 and math.isnan(spread.loc["shaky", "std"])
    assert spread.loc["shaky", "mean"] == INF and spread.loc["shaky", "n_nonfinite"] == 1
    batches = batch_size_robustness(rows, mode="min").set_index("family")
    assert batches.loc["shaky", "mean_metric"] == INF and batches.loc["shaky", "n_nonfinite"] == 1
    assert math.isnan(batches.loc["shaky", "std_metric"]) and batches.loc["shaky", "median_metric"] == 1.05
    assert batches.loc["steady", "mean_metric"] == pytest.approx(1.0)


def test_batch_size_robustness() -> None:
    statistics = ["final_aa_averaging_fraction"]  # what the report passes: Anderson declares it (by_batch_size)
    table = batch_size_robustness(_trials(), statistics=statistics).set_index(["family", "budget.batch_size"])
    adam32 = table.loc[("adam", 32)]
    assert (adam32["n"], adam32["mean_metric"], adam32["reached_fraction"]) == (2, 1.5, 1.0)
    assert (adam32["n_nonfinite"], adam32["median_metric"]) == (0, 1.5)
    anderson64 = table.loc[("anderson+adam", 64)]  # its one run: ∞, a failure, counted
    assert anderson64["n_nonfinite"] == 1 and math.isnan(anderson64["mean_metric"])
    assert adam32["median_steps_to_target"] == 15.0
    assert table.loc[("adam", 64), "median_steps_to_target"] == INF  # a miss counts as ∞
    anderson32 = table.loc[("anderson+adam", 32)]
    assert anderson32["mean_aa_averaging_fraction"] == 0.5
    assert math.isnan(adam32["mean_aa_averaging_fraction"])
    without = batch_size_robustness(_trials().drop(columns="final_aa_averaging_fraction"), statistics=statistics)
    assert "mean_aa_averaging_fraction" not in without.columns
    assert "mean_aa_averaging_fraction" not in batch_size_robustness(_trials()).columns  # none asked for


def test_failure_accounting_keeps_every_status() -> None:
    df = _trials()
    df.loc[len(df)] = {"family": "sgd", "status": "oom"}  # a status outside the list is kept too
    table = failure_accounting(df).set_index("family")
    for status in STATUSES:
        assert status in table.columns and f"{status}_pct" in table.columns
    names = [*STATUSES, "oom", "unknown"]
    assert (table[names].sum(axis=1) == table["n"]).all()
    assert table["n"].sum() == len(df)
    assert table.loc["anderson+adam", ["completed", "errored", "unknown"]].tolist() == [1, 1, 1]
    assert table.loc["sgd", "diverged_pct"] == 50.0 and table.loc["sgd", "oom"] == 1
    overall = failure_accounting(df, by=None)
    assert overall.loc[0, "completed"] == 4 and overall.loc[0, "n"] == len(df)


@pytest.mark.parametrize(
    "call",
    [
        lambda df: seed_robustness(df, "final_metric"),
        lambda df: batch_size_robustness(df),
        lambda df: failure_accounting(df),
        lambda df: algoperf_times(df),
    ],
)
def test_empty_tables_are_rejected(call) -> None:
    with pytest.raises(ValueError, match="empty"):
        call(_trials().iloc[0:0])
    with pytest.raises(ValueError, match="missing column"):
        call(pd.DataFrame({"x": [1]}))
