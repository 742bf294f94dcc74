"""A loopback port nothing listens on now, for a server this program starts itself (a private Ray's dashboard).
Another program may take it before ours binds: the caller checks."""

from __future__ import annotations

import socket

__all__ = ["free_loopback_port"]


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
