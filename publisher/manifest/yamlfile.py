"""Read a small YAML file keeping line numbers, with bounded size and clear errors.

Anchors and aliases are refused before any structure is built: expanding nested aliases costs
time exponential in a few hundred bytes (a "billion laughs"), and function repositories are read
inside the service. The same check guards every YAML document faaspub reads from a repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.scalarbool import ScalarBoolean

from publisher.manifest.problems import Problem, ProblemsError

MAX_BYTES = 1024 * 1024
MAX_NODES = 20_000


def unsafe(text: str) -> tuple[str, int | None] | None:
    """Why ``text`` must not be loaded (with the line), read from the event stream alone; None: fine.

    Raises ruamel's ``YAMLError`` for text that does not parse.
    """
    for count, event in enumerate(YAML(typ="rt", pure=True).parse(text)):
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None):
            return "YAML anchors and aliases (&name, *name) are not allowed", line
        if count > MAX_NODES:
            return f"more than {MAX_NODES} YAML nodes", line
    return None


def read_yaml(path: Path, *, what: str) -> Any:
    """Parse ``path`` with line information (ruamel round-trip types), or raise :class:`ProblemsError`."""
    name = path.name
    if not path.is_file():
        raise ProblemsError([Problem(name, "", f"{what} not found at {path}", hint=f"create {name}")])
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ProblemsError(
            [Problem(name, "", f"file is {size // 1024} KiB; a {what} is at most {MAX_BYTES // 1024} KiB")]
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemsError([Problem(name, "", f"not UTF-8 text (byte {exc.start})")]) from None
    if not text.strip():
        raise ProblemsError([Problem(name, "", "file is empty", hint=f"a {what} is a YAML mapping")])
    try:
        refused = unsafe(text)
        if refused is not None:
            reason, line = refused
            raise ProblemsError([Problem(name, "", reason, line=line, hint="write the values out in full")])
        data = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = exc.problem or exc.context or "syntax error"
        raise ProblemsError(
            [
                Problem(
                    name, "", f"YAML syntax error: {reason}", line=line, hint="check indentation and quoting"
                )
            ]
        ) from None
    except YAMLError as exc:
        raise ProblemsError([Problem(name, "", f"YAML error: {exc}")]) from None
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "nothing"
        raise ProblemsError([Problem(name, "", f"expected a mapping of keys, found {kind}", line=1)])
    return data


def line_of(data: Any, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the key or item at ``loc`` (or of its nearest existing parent)."""
    node = data
    line: int | None = None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def plain(data: Any) -> Any:
    """Round-trip YAML types to plain dicts, lists and scalars (for pydantic and JSON)."""
    if isinstance(data, dict):
        return {str(k): plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    if isinstance(data, ScalarBoolean):
        return bool(data)
    for kind in (str, float, int):  # ruamel's scalar subclasses keep formatting; drop it
        if isinstance(data, kind) and not isinstance(data, bool):
            return kind(data)
    return data
