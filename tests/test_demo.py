"""`autoaccel demo` (what `make demo` runs) trains every configured technique on the real data."""

import math

from autoaccel.demo import CONFIGS, run_demo


def test_demo_runs_every_technique(capsys):
    rows = run_demo(epochs=2, seed=0)
    assert [r["technique"] for r in rows] == [label for label, _, _ in CONFIGS]
    assert all(math.isfinite(r["val_mse"]) and r["val_mse"] > 0 for r in rows)
    assert "Warning" not in capsys.readouterr().err
