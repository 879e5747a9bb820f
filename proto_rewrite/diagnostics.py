"""Warnings and notes collected while loading or rewriting a model (never printed here)."""

from __future__ import annotations

from dataclasses import dataclass

from proto_rewrite.errors import Location


@dataclass(frozen=True)
class Diagnostic:
    level: str  # "warning" or "note"
    message: str
    location: Location = Location()
    hint: str | None = None

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
