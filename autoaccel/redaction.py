"""Secrets out of what autoaccel shows: one function for every URI or message printed, logged, written into a
report or an error (stdlib only, the lowest layer: errors use it too)."""

from __future__ import annotations

import re

__all__ = ["redact_uri"]

# `scheme://user:password@`: the password runs to the last "@" of the URI (SQLAlchemy takes "/", "#", "?" and ":"
# in a password unencoded); over-redacting a host is safe, leaking a password is not. A password with unencoded
# spaces (SQLAlchemy takes those too) is recognised when its words hold no "/" or "@": a message with a port and a
# path followed by an e-mail address stays as it is.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][\w+.-]*://[^\s:/@?#]*):(?:[^\s@/]*(?: [^\s@/]+)+@|\S*@)")
# query parameters whose values are secrets (password=, sslpassword=, client_secret=, token=, api_key=, ...)
_SECRET_QUERY = re.compile(r"(?P<key>[?&;][^=&#\s]*(?:passw|pwd|secret|token|api_?key)[^=&#\s]*=)[^&;#\s]*", re.I)


def redact_uri(text: str) -> str:
    """``text`` (a URI, or a message that contains URIs) fit to print, log or put in a report: each password in a
    URI's user info and each secret query value becomes ``***`` (``postgresql://user:***@host/db``). Text without
    secrets comes back unchanged; nothing raises, whatever the text."""
    return _SECRET_QUERY.sub(r"\g<key>***", _USERINFO.sub(r"\g<head>:***@", text))
