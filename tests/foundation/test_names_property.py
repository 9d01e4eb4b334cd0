"""Property tests: names and trigger paths are accepted exactly when they are valid."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from publisher.manifest.model import NAME_PATTERN, Manifest, StorageTrigger

VALID_NAME = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


@given(VALID_NAME)
def test_valid_names_are_accepted(name: str) -> None:
    assert Manifest(name=name, runtime="python:3.12", handler="h:main").name == name


@given(st.text(max_size=80))
def test_any_text_is_accepted_only_if_it_matches_the_rule(name: str) -> None:
    ok = bool(re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name))
    try:
        Manifest(name=name, runtime="python:3.12", handler="h:main")
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == ok, (name, NAME_PATTERN)


SEGMENT = st.text(
    alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
)


@given(st.lists(SEGMENT, min_size=1, max_size=6))
def test_absolute_paths_without_dotdot_are_accepted(parts: list[str]) -> None:
    path = "/" + "/".join(parts)
    if ".." in parts:
        try:
            StorageTrigger(source="local", path=path)
        except ValidationError as exc:
            assert "contains '..'" in str(exc)
        else:
            raise AssertionError(f"{path!r} accepted")
    else:
        assert StorageTrigger(source="local", path=path).path == path
