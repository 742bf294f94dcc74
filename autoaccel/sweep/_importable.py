"""The user's own code, importable wherever a sweep's trials run: the spec's folder and the working folder.

A spec names a user's workload ``"package.module:ClassName"``; the driver imports it to validate the spec, and every
Ray worker imports it again to train. Both folders are put on the driver's ``sys.path`` and on ``PYTHONPATH``, which
a local Ray's processes inherit from the driver that starts them (``ray.init`` passes its environment on to the
raylet, and the raylet to its workers). A cluster's workers have their own environment: the user ships the code
there (``runtime_env`` ``working_dir`` / ``py_modules``, or installs the package), see ``docs/workloads.md``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["make_importable"]


def make_importable(*folders: Path) -> None:
    """Append each folder (resolved) to ``sys.path`` and to ``PYTHONPATH`` where it is not there already; after
    what is there, so that a user's folder never shadows an installed package."""
    given = os.environ.get("PYTHONPATH", "")
    entries = [e for e in given.split(os.pathsep) if e]
    for folder in folders:
        where = str(Path(folder).expanduser().resolve())
        if where not in sys.path:
            sys.path.append(where)
        if where not in entries:
            entries.append(where)
    if entries:
        os.environ["PYTHONPATH"] = os.pathsep.join(entries)
