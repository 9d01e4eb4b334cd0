"""User-facing errors: one line that names what was wrong, plus an optional hint."""

from __future__ import annotations


class FaaspubError(Exception):
    """An error the user can act on. The CLI prints ``message`` (and ``hint``) without a traceback."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class NotAvailableYet(FaaspubError):
    """A verb whose capability is not configured or built on this installation."""


class ConfigError(FaaspubError):
    """The configuration file or an environment override is invalid."""
