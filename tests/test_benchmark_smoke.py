"""The overhead benchmark still runs end to end (tiny sizes). Its figures are not asserted: timing is no test."""

import importlib.util
import math
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "benchmarks" / "optim_overhead.py"


def test_optim_overhead_quick_run(capsys):
    spec = importlib.util.spec_from_file_location("optim_overhead", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    rows = module.main(["--quick", "--model", "mlp"])
    names = {(r["technique"], r["implementation"]) for r in rows}
    assert {("anderson(adam) m=5, averaging auto", "autoaccel/torch"), ("adahessian", "autoaccel/torch")} <= names
    assert {("adascale(sgd) S=2", "fairscale"), ("lookahead(adam) k=5", "pytorch-optimizer")} <= names
    for r in rows:
        assert math.isfinite(r["iteration_ratio"]) and r["iteration_ratio"] > 0
        if r["technique"] == r["baseline"]:
            assert r["iteration_ratio"] == 1.0
    assert "| technique | implementation |" in capsys.readouterr().out
