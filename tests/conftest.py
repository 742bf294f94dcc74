import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Every Ray the tests start (and its nodes) inherits this: no per-node metrics agent polling the machine in the
# background of a 2-core suite (a local sweep's own Ray turns it off the same way).
os.environ.setdefault("RAY_enable_metrics_collection", "0")


def pytest_collection_modifyitems(config, items):
    """The opt-in campaign's tests (marker ``campaign``) are skipped unless AUTOACCEL_FAULTS=1 (`make faults`).

    The slow tests (about half a minute or more each) first, half of them at the head of each half of the list:
    `make test`'s xdist scheduler (worksteal) hands its two workers one half each, so each starts on its share of the
    long tests and they finish together, instead of one of them starting a minute-long test when the rest is done."""
    if os.environ.get("AUTOACCEL_FAULTS") != "1":
        skip = pytest.mark.skip(reason="minutes of Ray sweeps: `make faults` runs the campaign, not `make test`")
        for item in items:
            if item.get_closest_marker("campaign") is not None:
                item.add_marker(skip)
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    rest = [item for item in items if item.get_closest_marker("slow") is None]
    first, second = slow[0::2], slow[1::2]
    cut = max(len(items) // 2 - len(first), 0)
    items[:] = first + rest[:cut] + second + rest[cut:]
