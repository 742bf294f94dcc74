import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config, items):
    """The slow tests (about half a minute or more each) first: the suite's workers then finish together, instead of
    one of them starting a minute-long test when the rest is done."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
