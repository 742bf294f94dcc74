"""The errors bad input raises (a configuration value, a data file); torch-free, so the command line starts fast."""

from __future__ import annotations

from typing import Any

from autoaccel.redaction import redact_uri

__all__ = ["ConfigError", "DataError"]


class ConfigError(ValueError):
    """A configuration value is not allowed.

    ``key`` is the dotted config path (``anderson.history``), ``value`` what was given and ``allowed`` a short
    description of what is accepted. Callers that read a file prefix the file name via :meth:`in_file`.
    """

    def __init__(self, key: str, value: Any, allowed: str, source: str | None = None):
        self.key, self.value, self.allowed, self.source = key, value, allowed, source
        where = f"{source}: " if source else ""
        super().__init__(redact_uri(f"{where}{key} = {value!r}: {allowed}"))  # a value may be a URI with a password

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:  # picklable and copyable (Ray ships errors between processes)
        return type(self), (self.key, self.value, self.allowed, self.source)

    def in_file(self, source: str) -> ConfigError:
        return ConfigError(self.key, self.value, self.allowed, source)


class DataError(RuntimeError):
    """Data that cannot be read or fetched; the message names the file and what to do."""

    def __init__(self, message: str):
        super().__init__(redact_uri(message))  # a data URL may carry a token
