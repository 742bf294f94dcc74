"""Sensitivity analysis: importance recovers the one parameter that matters (PED-ANOVA and fANOVA, with a conditional
parameter present), curves and heat-maps locate the optimum, perturbations follow their documented rules."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from autoaccel.analysis import (
    importance_by_group,
    infer_distributions,
    param_importance,
    perturbation_loss,
    sensitivity_curve,
    sensitivity_heatmap,
)
from autoaccel.sweep.reruns import perturbation_configs

N = 120


def _synthetic(n: int = N, seed: int = 0) -> pd.DataFrame:
    """value = 0.1 + (log10 lr + 2)² + tiny noise: only lr matters (optimum 1e-2); momentum is irrelevant, and so is the
    Anderson history, which is set only in the anderson family (a conditional parameter, NaN elsewhere)."""
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-4, 0, n)
    anderson = rng.uniform(size=n) < 0.5
    return pd.DataFrame(
        {
            "family": np.where(anderson, "anderson+sgd", "sgd"),
            "optimizer.lr": lr,
            "optimizer.momentum": rng.uniform(0.0, 0.99, n),
            "optimizer.anderson.history": np.where(anderson, rng.integers(1, 19, n), np.nan),
            "final_metric": 0.1 + (np.log10(lr) + 2) ** 2 + 1e-3 * rng.standard_normal(n),
        }
    )


def test_infer_distributions() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    df = _synthetic().assign(flag=lambda d: d["optimizer.lr"] > 0.01, never=np.nan)
    dists = infer_distributions(df, ["optimizer.lr", "optimizer.momentum", "optimizer.anderson.history", "family"])
    assert isinstance(dists["optimizer.lr"], FloatDistribution) and dists["optimizer.lr"].log  # > 2 decades
    # uniform on [0, 0.99] spans > 2 decades too, but is not skewed like a log-uniform draw
    assert isinstance(dists["optimizer.momentum"], FloatDistribution) and not dists["optimizer.momentum"].log
    history = dists["optimizer.anderson.history"]  # int values promoted to float by the NaNs
    assert isinstance(history, IntDistribution) and not history.log and history.high <= 18
    assert isinstance(dists["family"], CategoricalDistribution)
    more = infer_distributions(df, ["flag", "never"])
    assert isinstance(more["flag"], CategoricalDistribution) and set(more["flag"].choices) == {True, False}
    assert "never" not in more


def test_ped_anova_finds_the_relevant_parameter() -> None:
    df = _synthetic()
    result = param_importance(df, metric="final_metric", mode="min", evaluator="ped_anova", n_bootstrap=5)
    assert result.index[0] == "optimizer.lr" and result.loc["optimizer.lr", "importance"] > 0.8
    assert set(result.index) == {"optimizer.lr", "optimizer.momentum", "optimizer.anderson.history"}
    assert result["importance"].sum() == pytest.approx(1.0)
    assert result.loc["optimizer.anderson.history", "conditional"]  # assessed although conditional
    assert not math.isnan(result.loc["optimizer.anderson.history", "importance"])
    assert (result["ci_low"] <= result["ci_high"]).all()
    assert result.attrs["n_trials"] == N and result.attrs["evaluator"] == "ped_anova"
    # The same trials maximized as −value give the same answer: the study minimizes the negated metric.
    flipped = param_importance(df.assign(final_metric=-df["final_metric"]), mode="max", n_bootstrap=5)
    pd.testing.assert_frame_equal(result, flipped)


def test_fanova_finds_the_relevant_parameter_and_skips_conditional() -> None:
    df = _synthetic()
    fast = {"n_trees": 16}  # fewer trees than Optuna's 64 keep the test quick; the signal is strong
    result = param_importance(df, mode="min", evaluator="fanova", seed=0, n_bootstrap=2, evaluator_options=fast)
    assert result.index[0] == "optimizer.lr"
    assert result.loc["optimizer.lr", "importance"] > 0.8
    history = result.loc["optimizer.anderson.history"]
    assert math.isnan(history["importance"]) and "conditional" in history["note"]
    again = param_importance(df, mode="min", evaluator="fanova", seed=0, n_bootstrap=2, evaluator_options=fast)
    pd.testing.assert_frame_equal(result, again)  # seeded


def test_importance_from_a_study_and_failed_trials() -> None:
    import optuna
    from optuna.distributions import FloatDistribution

    df = _synthetic(60)
    dists = {"lr": FloatDistribution(1e-4, 1.0, log=True), "momentum": FloatDistribution(0.0, 0.99)}
    study = optuna.create_study(direction="minimize")
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={"lr": float(r["optimizer.lr"]), "momentum": float(r["optimizer.momentum"])},
                distributions=dists,
                value=float(r["final_metric"]),
            )
            for _, r in df.iterrows()
        ]
    )
    assert param_importance(study, n_bootstrap=0).index[0] == "lr"
    # Failed trials (NaN) are scored as the worst finite value by default, or dropped
    broken = df.copy()
    broken.loc[:4, "final_metric"] = np.nan
    kept = param_importance(broken, n_bootstrap=0)
    assert kept.attrs["n_trials"] == 60 and kept.attrs["n_failed"] == 5
    assert param_importance(broken, n_bootstrap=0, failed="drop").attrs["n_trials"] == 55


def test_importance_edge_cases() -> None:
    df = _synthetic(10)
    with pytest.raises(ValueError, match="at least 10 completed trials with a finite metric, got 9"):
        param_importance(df.iloc[:9])  # from fewer than 10, importance is noise: refused, with why
    assert len(param_importance(df.iloc[:3], n_bootstrap=0, min_trials=3)) == 2  # unless fewer are asked for
    failing = df.assign(final_metric=df["final_metric"].where(df.index < 9))  # 9 completed, 1 failed
    with pytest.raises(ValueError, match="got 9"):
        param_importance(failing)  # a failed trial scores as the worst, but it is no completed trial
    with pytest.raises(ValueError, match="min_trials"):
        param_importance(df, min_trials=1)
    with pytest.raises(ValueError, match="empty"):
        param_importance(df.iloc[:0])
    with pytest.raises(ValueError, match="evaluator"):
        param_importance(df, evaluator="shap")
    with pytest.raises(ValueError, match="no hyperparameters"):
        param_importance(df[["final_metric"]])
    small = param_importance(df, n_bootstrap=0)
    assert any("noisy" in w for w in small.attrs["warnings"])  # 10 trials: 1 in the top 10 %


def test_declared_distributions_are_used_and_the_others_inferred() -> None:
    """The space a sweep declared (per family) merges into one distribution per column: the widest range, log only
    where every family declares it, the union of choices; importance takes it for the columns it covers and infers
    the rest."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from autoaccel.analysis import declared_distributions

    spaces = {
        "one": {
            "sgd": {"optimizer.lr": {"kind": "float", "low": 1e-3, "high": 0.3, "log": True, "step": None}},
            "adam": {
                "optimizer.lr": {"kind": "float", "low": 1e-4, "high": 0.03, "log": True, "step": None},
                "optimizer.anderson.averaging": {"kind": "choice", "choices": ["off", "auto"]},
            },
        },
        "two": {
            "": {
                "optimizer.anderson.history": {"kind": "int", "low": 2, "high": 8, "log": False, "step": 2},
                "optimizer.anderson.averaging": {"kind": "choice", "choices": ["on", "off"]},
            }
        },
    }
    merged = declared_distributions(spaces)
    assert merged["optimizer.lr"] == FloatDistribution(1e-4, 0.3, log=True)
    assert merged["optimizer.anderson.history"] == IntDistribution(2, 8, step=2)
    assert merged["optimizer.anderson.averaging"] == CategoricalDistribution(["off", "auto", "on"])
    df = _synthetic(40)
    inferred = param_importance(df, n_bootstrap=0)
    declared = param_importance(
        df, n_bootstrap=0, distributions={"optimizer.lr": FloatDistribution(1e-5, 10, log=True)}
    )
    assert set(declared.index) == set(inferred.index)
    assert declared.index[0] == inferred.index[0] == "optimizer.lr"  # only lr matters (see _synthetic)


def test_importance_by_group_per_family_and_overall() -> None:
    df = pd.concat([_synthetic(80), _synthetic(1, seed=1).assign(family="adam")], ignore_index=True)
    table = importance_by_group(df, n_bootstrap=2)
    assert set(table["group"]) == {"anderson+sgd", "sgd", "adam", "(all)"}
    sgd = table[table["group"] == "sgd"]
    assert set(sgd["param"]) == {"optimizer.lr", "optimizer.momentum"}  # history never set in sgd
    overall = table[table["group"] == "(all)"].set_index("param")
    assert "family" in overall.index and overall["importance"].idxmax() == "optimizer.lr"
    adam = table[table["group"] == "adam"]  # one trial: kept, with the reason
    assert len(adam) == 1 and adam["param"].isna().all() and "at least 10 completed trials" in adam["note"].iloc[0]


def test_sensitivity_curve_best_bin_holds_the_optimum() -> None:
    df = _synthetic(400)
    curve = sensitivity_curve(df, "optimizer.lr", "final_metric", "min", bins=8)
    assert curve.attrs["log"] and len(curve) == 8 and curve["n"].sum() == 400
    best_bin = curve.loc[curve["best_rel"].idxmin()]
    assert best_bin["low"] <= 1e-2 <= best_bin["high"]
    assert best_bin["best_rel"] == 1.0 and (curve["best_rel"] >= 1).all()
    assert curve.loc[curve["median_rel"].idxmin(), "low"] <= 1e-2 <= curve.loc[curve["median_rel"].idxmin(), "high"]
    # The conditional parameter: only the trials that set it; the others are counted as inactive.
    history = sensitivity_curve(df, "optimizer.anderson.history", bins=4, log=False)
    assert history["n"].sum() + history.attrs["n_inactive"] == 400 and not history.attrs["log"]


def test_sensitivity_curve_max_mode_and_failures() -> None:
    df = pd.DataFrame({"p": [1.0, 2.0, 3.0, 4.0], "acc": [0.5, 0.8, None, 0.4]})
    curve = sensitivity_curve(df, "p", "acc", "max", bins=2)
    # bins [1, 2.5) and [2.5, 4]; overall best 0.8; the missing accuracy is a failure (−∞)
    assert curve["best"].tolist() == [0.8, 0.4]
    assert curve["best_rel"].tolist() == pytest.approx([1.0, 0.5])
    assert curve["n_failed"].tolist() == [0, 1] and curve.loc[1, "median"] == -math.inf
    with pytest.raises(ValueError, match="not numeric"):
        sensitivity_curve(df.assign(p=["a", "b", "c", "d"]), "p", "acc", "max")
    with pytest.raises(ValueError, match="empty"):
        sensitivity_curve(df.iloc[:0], "p", "acc", "max")


def test_sensitivity_heatmap_shape_and_cells() -> None:
    df = _synthetic(200)
    grid = sensitivity_heatmap(df, "optimizer.lr", "optimizer.momentum", bins=(5, 3))
    assert grid["best"].shape == grid["count"].shape == (3, 5)  # rows = y bins
    assert grid["count"].sum() == 200 and grid["log_x"] and not grid["log_y"]
    assert np.nanmin(grid["best"]) == df["final_metric"].min()
    tiny = pd.DataFrame({"x": [1.0, 2.0, 1.0], "y": [1.0, 2.0, 2.0], "m": [3.0, 1.0, 2.0]})
    cells = sensitivity_heatmap(tiny, "x", "y", "m", bins=2)
    # x bins [1, 1.5) [1.5, 2]; y likewise: (x=1, y=1) → 3; (x=1, y=2) → 2; (x=2, y=2) → 1; (x=2, y=1) empty
    np.testing.assert_array_equal(cells["best"], [[3.0, np.nan], [2.0, 1.0]])
    np.testing.assert_array_equal(cells["count"], [[1, 0], [1, 1]])


CONFIG = {
    "base": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "nesterov": True,
    "lookahead": {"k": 5, "alpha": 0.5},
    "anderson": {"history": 1, "averaging": "auto"},
    "demon": {"total_steps": 100},
}


def test_perturbation_configs_rules() -> None:
    configs = perturbation_configs(CONFIG, factor=2.0)
    got = {(key, direction): cfg for key, direction, cfg in configs}
    values = {}
    for (key, direction), cfg in got.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        values[(key, direction)] = node
    assert values == pytest.approx(
        {
            ("lr", "up"): 0.2,
            ("lr", "down"): 0.05,
            ("momentum", "up"): 0.95,  # 1 − 0.1/2
            ("momentum", "down"): 0.8,  # 1 − 0.1·2
            ("lookahead.k", "up"): 10,
            ("lookahead.k", "down"): 3,  # 2.5 rounded half up
            ("lookahead.alpha", "up"): 0.75,  # 1 − 0.5/2
            ("lookahead.alpha", "down"): 0.25,  # 1 − 0.5·2 = 0 is outside (0, 1): halved instead
            ("anderson.history", "up"): 2,  # down would stay 1: left out
        }
    )
    # weight_decay 0, bools, strings and demon.total_steps are not perturbed; everything else is unchanged
    assert got[("lr", "up")]["lookahead"] == CONFIG["lookahead"] and got[("lr", "up")]["nesterov"] is True
    assert isinstance(values[("lookahead.k", "down")], int)
    assert CONFIG["lookahead"]["alpha"] == 0.5 and CONFIG["lr"] == 0.1  # the input is not modified
    only = perturbation_configs(CONFIG, params=["lr"])
    assert [(k, d) for k, d, _ in only] == [("lr", "up"), ("lr", "down")]
    with pytest.raises(ValueError, match="not numeric"):
        perturbation_configs(CONFIG, params=["base"])
    with pytest.raises(ValueError, match="factor"):
        perturbation_configs(CONFIG, factor=1.0)


def test_perturbation_loss() -> None:
    measured = {("lr", "up"): 0.12, ("lr", "down"): 0.09, ("momentum", "up"): float("nan"), ("momentum", "down"): 0.1}
    table = perturbation_loss(0.1, measured, mode="min")
    assert list(table.index) == ["momentum", "lr"]  # a diverged perturbation is the worst
    assert table.loc["lr", "rel_loss_up"] == pytest.approx(0.2)
    assert table.loc["lr", "rel_loss_down"] == pytest.approx(-0.1)  # better than the base
    assert table.loc["lr", "worst_rel_loss"] == pytest.approx(0.2)
    assert table.loc["momentum", "worst_rel_loss"] == math.inf
    accuracy = perturbation_loss(0.8, {("lr", "up"): 0.6, ("lr", "down"): 0.9}, mode="max")
    assert accuracy.loc["lr", "rel_loss_up"] == pytest.approx(0.25)
    assert accuracy.loc["lr", "worst_rel_loss"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="non-zero"):
        perturbation_loss(0.0, measured)
    with pytest.raises(ValueError, match="empty"):
        perturbation_loss(0.1, {})
