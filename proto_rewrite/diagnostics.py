"""Warnings and notes collected while loading or rewriting a model (never printed here)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from proto_rewrite.errors import Location, as_flags


@dataclass(frozen=True)
class Diagnostic:
    level: str  # "warning" or "note"
    message: str
    location: Location = Location()
    hint: str | None = None
    options: tuple[str, ...] = ()  # the Python names of the options the text mentions, as on errors

    def with_flags(self, spelling=None) -> Diagnostic:
        """The same diagnostic with each option named as a command-line flag (a copy; see
        :func:`~proto_rewrite.errors.as_flags`)."""
        if not self.options:
            return self
        hint = as_flags(self.hint, self.options, spelling) if self.hint else self.hint
        return replace(self, message=as_flags(self.message, self.options, spelling), hint=hint)

    def __str__(self) -> str:
        where = str(self.location)
        text = f"{self.level}: {where}: {self.message}" if where else f"{self.level}: {self.message}"
        return text + (f" (hint: {self.hint})" if self.hint else "")

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "message": self.message,
            "path": None if self.location.path is None else str(self.location.path),
            "line": self.location.line,
            "layer": self.location.layer,
            "hint": self.hint,
        }
