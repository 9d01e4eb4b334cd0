"""A problem found in a function repository: file, field path, line, message and a hint."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from publisher.errors import FaaspubError


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    message: str
    line: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}:{field} {self.message}{hint}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProblemsError(FaaspubError):
    """Raised when a file cannot be used; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = str(problems[0]) if problems else "invalid"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more)
