"""Matching events to bindings, and the deploy-time check of allowed paths."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.config import Settings
from publisher.core.types import StorageEvent
from publisher.errors import FaaspubError
from publisher.manifest.model import HttpTrigger, StorageTrigger, TriggerEntry
from publisher.triggers.bindings import Binding, check_allowed, match


def event(path: str, kind: str = "created", source: str = "local") -> StorageEvent:
    return StorageEvent(source=source, path=path, kind=kind, time=datetime.now(UTC))  # type: ignore[arg-type]


def binding(path: str, **kw: object) -> Binding:
    defaults: dict[str, object] = {
        "namespace": "ns",
        "function": "fn",
        "version": "1",
        "digest": "d",
        "source": "local",
    }
    return Binding(path=path, **{**defaults, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "recursive", "glob", "expected"),
    [
        ("/data/a.h5", False, "*.h5", True),
        ("/data/sub/a.h5", False, "*.h5", False),  # direct children only
        ("/data/sub/a.h5", True, "*.h5", True),
        ("/database/a.h5", True, "*", False),  # a prefix is a directory, not a string prefix
        ("/data/a.txt", True, "*.h5", False),
        ("/data/run[1].h5", False, "run[[]1].h5", True),
        ("/data/A.H5", False, "*.h5", False),  # globs are case-sensitive
    ],
)
def test_path_prefix_and_glob(path: str, recursive: bool, glob: str, expected: bool) -> None:
    found = match(event(path), [binding("/data/", recursive=recursive, match=glob)])
    assert bool(found) is expected


def test_kinds_sources_and_one_delivery_per_version() -> None:
    bindings = [
        binding("/data", events=("created",)),
        binding("/data", recursive=True, match="*.h5"),  # same version again: still one delivery
        binding("/data", function="other", events=("deleted",)),
        binding("bucket/raw", source="s3", function="s3fn"),
    ]
    assert [b.function for b in match(event("/data/x.h5"), bindings)] == ["fn"]
    assert [b.function for b in match(event("/data/x.h5", "deleted"), bindings)] == ["other"]
    assert [b.function for b in match(event("bucket/raw/x", source="s3"), bindings)] == ["s3fn"]
    assert match(event("/data/x.h5", source="dcache"), bindings) == []


@given(st.lists(st.text(alphabet="abc.", min_size=1, max_size=4), min_size=1, max_size=4))
def test_recursive_binding_at_root_matches_every_path(parts: list[str]) -> None:
    path = "/" + "/".join(parts)
    assert match(event(path), [binding("/", recursive=True)])


def settings(allowed: dict[str, list[str]]) -> Settings:
    return Settings.model_validate({"storage": {"allowed_paths": allowed}})


def test_check_allowed_names_the_path_and_the_prefixes() -> None:
    allowed = settings({"xfel": ["/pnfs/xfel.eu/exfel"], "*": ["/scratch"]})
    inside = StorageTrigger(source="dcache", path="/pnfs/xfel.eu/exfel/raw/SPB")
    check_allowed("xfel", [inside, TriggerEntry(http=HttpTrigger(public=True))], allowed)
    check_allowed("other", [StorageTrigger(source="local", path="/scratch/x")], allowed)
    with pytest.raises(FaaspubError) as caught:
        check_allowed("other", [TriggerEntry(storage=inside)], allowed)
    assert "/pnfs/xfel.eu/exfel/raw/SPB" in caught.value.message
    assert "/scratch" in caught.value.message
    with pytest.raises(FaaspubError, match=re.escape("/pnfs/xfel.eu/exfelx")):
        check_allowed("xfel", [StorageTrigger(source="dcache", path="/pnfs/xfel.eu/exfelx")], allowed)


def test_default_allows_the_embedded_namespace_only_and_nothing_once_gitlab_serves() -> None:
    s3 = StorageTrigger(source="s3", path="bucket/raw")
    check_allowed("local", [s3], Settings())  # the embedded single namespace: its own storage
    with pytest.raises(FaaspubError, match="bucket/raw"):
        check_allowed("any", [s3], Settings())
    with pytest.raises(FaaspubError, match="may bind: none"):
        check_allowed("local", [s3], Settings.model_validate({"gitlab": {"url": "https://gl.example"}}))
    with pytest.raises(FaaspubError, match="bucket/raw"):
        check_allowed("any", [s3], settings({"*": ["/other"]}))
    check_allowed("any", [s3], settings({"*": ["/bucket"]}))


def test_s3_bindings_stay_inside_the_namespace_buckets() -> None:
    """With storage.s3.buckets, a namespace binds only its buckets (or prefixes of them) and
    storage.allowed_paths still applies."""
    configured = Settings.model_validate(
        {
            "storage": {
                "allowed_paths": {"xfel": ["/"], "*": ["/shared"]},
                "s3": {"buckets": {"xfel": ["xfel-raw", "proc/xfel"], "*": ["shared"]}},
            }
        }
    )
    for path in ("xfel-raw", "xfel-raw/SPB/run 1", "proc/xfel/out", "shared/x"):
        check_allowed("xfel", [StorageTrigger(source="s3", path=path)], configured)
    check_allowed("desy", [StorageTrigger(source="s3", path="shared/in")], configured)
    refused = {
        ("xfel", "xfel-raw2"): "buckets namespace 'xfel' may bind: xfel-raw, proc/xfel, shared",
        ("xfel", "proc"): "outside the buckets",  # the bucket, but not the prefix it was given
        ("xfel", "proc/xfel2/a"): "outside the buckets",
        ("desy", "xfel-raw/SPB"): "outside the paths namespace 'desy' may bind: /shared",
        ("desy", "shared2"): "outside the paths",
    }
    for (namespace, path), message in refused.items():
        with pytest.raises(FaaspubError, match=re.escape(message)) as caught:
            check_allowed(namespace, [StorageTrigger(source="s3", path=path)], configured)
        assert repr(path) in caught.value.message
    # Buckets say nothing about other sources.
    check_allowed("xfel", [StorageTrigger(source="dcache", path="/pnfs/x")], configured)


def test_with_s3_credentials_every_s3_binding_needs_a_bucket_of_its_namespace() -> None:
    """A service that lists buckets and presigns URLs with its own credentials lets no namespace
    bind a bucket the operator did not give it, even with the default allowed paths."""
    reading = Settings.model_validate({"storage": {"s3": {"credentials_file": "/run/secrets/s3"}}})
    with pytest.raises(FaaspubError, match=re.escape("may bind: none")):  # even the embedded namespace
        check_allowed("local", [StorageTrigger(source="s3", path="any-bucket")], reading)
    check_allowed("local", [StorageTrigger(source="local", path="/data")], reading)
