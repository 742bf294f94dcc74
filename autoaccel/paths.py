"""Where a command will write, checked before it does any work: a summary written after a 14 s sweep into a folder
that is not there was lost with a traceback. Torch-free, so the command line checks at once."""

from __future__ import annotations

import os
from pathlib import Path

from autoaccel.errors import ConfigError

__all__ = ["check_output_file", "check_output_folder"]


def check_output_file(key: str, path: str | os.PathLike[str]) -> None:
    """Raise ConfigError (naming ``key``) unless a file can be written at ``path``: not a folder, in a folder that
    exists (it is not created), writable by this user."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(key, str(path), "a file to write (this is a folder)")
    parent = target.parent
    if not parent.exists():
        raise ConfigError(key, str(path), f"a file in an existing folder ({parent} does not exist)")
    if not parent.is_dir():
        raise ConfigError(key, str(path), f"a file in a folder ({parent} is a file)")
    writable = os.access(target, os.W_OK) if target.exists() else os.access(parent, os.W_OK | os.X_OK)
    if not writable:
        raise ConfigError(key, str(path), f"a file this user can write ({target if target.exists() else parent})")


def check_output_folder(key: str, path: str | os.PathLike[str]) -> None:
    """Raise ConfigError (naming ``key``) unless ``path`` is a folder this user can write, or one it can create
    (every missing folder up to it is created, as the commands do): its nearest existing ancestor must be a
    writable folder, not a file."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ConfigError(key, str(path), "a folder (this is a file)")
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(key, str(path), f"a folder that can be created ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        done = "write" if existing == target else f"create ({existing} is not writable)"
        raise ConfigError(key, str(path), f"a folder this user can {done}")
