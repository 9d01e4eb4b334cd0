"""The DOI write-back: ``CITATION.cff`` (doi, version, date-released) and a README DOI badge."""

from __future__ import annotations

import io
import re
from datetime import date

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from publisher.manifest.yamlfile import unsafe

BADGE_MARK = "<!-- faaspub-doi -->"
_BADGE_LINE = re.compile(rf"^.*{re.escape(BADGE_MARK)}.*$", re.MULTILINE)


def update_cff(text: str | None, doi: str, version: str, released: date) -> str | None:
    """``text`` with doi, version and date-released set (comments and order kept); None without a file."""
    if text is None:
        return None
    yaml = YAML()
    yaml.preserve_quotes = True
    try:
        doc = None if unsafe(text) else yaml.load(text)
    except YAMLError:
        return None  # an unreadable CITATION.cff is reported by validation, not rewritten here
    if not isinstance(doc, dict):
        return None
    doc["doi"] = doi
    doc["version"] = version
    doc["date-released"] = released.isoformat()
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def badge(doi: str) -> str:
    return f"[![DOI](https://zenodo.org/badge/DOI/{doi}.svg)](https://doi.org/{doi}) {BADGE_MARK}"


def update_readme(text: str | None, doi: str) -> str:
    """The README with one faaspub DOI badge: replaced in place, else put under the first heading."""
    line = badge(doi)
    if text is None:
        return line + "\n"
    if _BADGE_LINE.search(text):
        return _BADGE_LINE.sub(line, text, count=1)
    lines = text.splitlines(keepends=True)
    at = next((i + 1 for i, ln in enumerate(lines) if ln.startswith("# ")), 0)
    lines.insert(at, ("\n" if at else "") + line + "\n\n")
    return "".join(lines)
