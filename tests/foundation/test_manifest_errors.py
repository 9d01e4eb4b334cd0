"""Every malformed function.yaml gets a specific message naming the field (and line), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.manifest.load import load_manifest
from publisher.manifest.problems import ProblemsError

VALID = "name: fn\nruntime: python:3.12\nhandler: handler:main\n"

# (id, function.yaml text, field path, words the message must contain, line or None)
CASES = [
    ("empty", "", "", "file is empty", None),
    ("only-comment", "# nothing here\n", "", "expected a mapping", 1),
    ("list-not-mapping", "- name: fn\n", "", "expected a mapping", 1),
    ("yaml-syntax", "name: fn\nruntime: [python:3.12\nhandler: h:main\n", "", "YAML syntax error", None),
    ("bad-indent", "name: fn\n  runtime: python:3.12\n", "", "YAML syntax error", 2),
    ("missing-name", "runtime: python:3.12\nhandler: h:main\n", "name", "is required", None),
    ("missing-handler", "name: fn\nruntime: python:3.12\n", "handler", "is required", None),
    ("uppercase-name", VALID.replace("name: fn", "name: MyFn"), "name", "should match pattern", 1),
    ("name-too-long", VALID.replace("name: fn", "name: " + "a" * 64), "name", "should match", 1),
    ("name-trailing-dash", VALID.replace("name: fn", "name: fn-"), "name", "should match", 1),
    ("name-underscore", VALID.replace("name: fn", "name: my_fn"), "name", "should match", 1),
    ("name-number-type", VALID.replace("name: fn", "name: 42"), "name", "string", 1),
    ("bad-runtime", VALID.replace("python:3.12", "python:3"), "runtime", "python:3.11", 2),
    ("runtime-node", VALID.replace("python:3.12", "nodejs:20"), "runtime", "python:3.12", 2),
    ("handler-no-colon", VALID.replace("handler:main", "handler.main"), "handler", "should match", 3),
    ("handler-dash", VALID.replace("handler:main", "my-mod:main"), "handler", "should match", 3),
    ("unknown-top-key", VALID + "runtme: x\n", "runtme", "unknown key 'runtme'", 4),
    ("unknown-limit-key", VALID + "limits:\n  memroy: 256\n", "limits.memroy", "did you mean 'memory'", 5),
    ("memory-too-big", VALID + "limits:\n  memory: 4096\n", "limits.memory", "less than or equal to 512", 5),
    (
        "memory-too-small",
        VALID + "limits:\n  memory: 64\n",
        "limits.memory",
        "greater than or equal to 128",
        5,
    ),
    ("memory-string", VALID + "limits:\n  memory: lots\n", "limits.memory", "integer", 5),
    ("timeout-no-unit", VALID + "limits:\n  timeout: 90\n", "limits.timeout", "needs a unit", 5),
    (
        "timeout-too-long",
        VALID + "limits:\n  timeout: 10m\n",
        "limits.timeout",
        "outside the platform bounds",
        5,
    ),
    ("timeout-garbage", VALID + "limits:\n  timeout: soon\n", "limits.timeout", "not a duration", 5),
    (
        "concurrency-zero",
        VALID + "limits:\n  concurrency: 0\n",
        "limits.concurrency",
        "greater than or equal",
        5,
    ),
    ("env-list", VALID + "env:\n  - A=b\n", "env", "dictionary", 4),
    ("env-nested", VALID + "env:\n  A:\n    b: 1\n", "env", "must be a string", 4),
    ("secret-lowercase", VALID + "secrets: [token]\n", "secrets", "UPPER_CASE", 4),
    ("secret-in-env", VALID + "env:\n  TOKEN: x\nsecrets: [TOKEN]\n", "", "both env and secrets", None),
    (
        "trigger-no-path",
        VALID + "triggers:\n  - storage:\n      source: local\n",
        "triggers.0.storage.path",
        "is required",
        5,
    ),
    (
        "trigger-bad-source",
        VALID + "triggers:\n  - storage:\n      source: ftp\n      path: /x\n",
        "triggers.0.storage.source",
        "'dcache', 's3' or 'local'",
        6,
    ),
    (
        "trigger-relative-path",
        VALID + "triggers:\n  - storage:\n      source: dcache\n      path: pnfs/x\n",
        "triggers.0.storage",
        "must be absolute",
        5,
    ),
    (
        "trigger-dotdot",
        VALID + "triggers:\n  - storage:\n      source: local\n      path: /a/../etc\n",
        "triggers.0.storage.path",
        "contains '..'",
        7,
    ),
    (
        "glob-never-matches",
        VALID + "triggers:\n  - storage:\n      source: local\n      path: /in\n      match: '*.[h5'\n",
        "triggers.0.storage.match",
        "can never match",
        8,
    ),
    (
        "glob-with-slash",
        VALID + "triggers:\n  - storage:\n      source: local\n      path: /in\n      match: 'a/*.h5'\n",
        "triggers.0.storage.match",
        "file name only",
        8,
    ),
    (
        "trigger-bad-event",
        VALID + "triggers:\n  - storage:\n      source: local\n      path: /in\n      events: [modified]\n",
        "triggers.0.storage.events.0",
        "'created' or 'deleted'",
        8,
    ),
    (
        "trigger-two-kinds",
        VALID + "triggers:\n  - storage: {source: local, path: /in}\n    http: {public: true}\n",
        "triggers.0",
        "exactly one kind",
        5,
    ),
    (
        "trigger-unknown-kind",
        VALID + "triggers:\n  - cron: {schedule: '* * * * *'}\n",
        "triggers.0.cron",
        "unknown key 'cron'",
        5,
    ),
    (
        "trigger-typo-key",
        VALID + "triggers:\n  - storage: {source: local, path: /in, recursiv: true}\n",
        "triggers.0.storage.recursiv",
        "did you mean 'recursive'",
        5,
    ),
    (
        "s3-leading-slash",
        VALID + "triggers:\n  - storage: {source: s3, path: /bucket/raw}\n",
        "triggers.0.storage",
        "must start with the bucket",
        5,
    ),
    ("examples-not-list", VALID + "examples: {input: {}}\n", "examples", "list", 4),
    (
        "example-unknown-key",
        VALID + "examples:\n  - inptu: {a: 1}\n",
        "examples.0.inptu",
        "did you mean 'input'",
        5,
    ),
]


@pytest.mark.parametrize(
    ("text", "field", "words", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_manifest_is_explained(
    tmp_path: Path, text: str, field: str, words: str, line: int | None
) -> None:
    (tmp_path / "function.yaml").write_text(text)
    with pytest.raises(ProblemsError) as info:
        load_manifest(tmp_path)
    problems = info.value.problems
    match = [p for p in problems if p.field == field and words in p.message + (p.hint or "")]
    assert match, f"no problem for {field!r} with {words!r}: {[str(p) for p in problems]}"
    if line is not None:
        assert match[0].line == line


def test_ten_megabyte_manifest_is_refused_without_reading_it(tmp_path: Path) -> None:
    (tmp_path / "function.yaml").write_text("# " + "x" * (10 * 1024 * 1024))
    with pytest.raises(ProblemsError, match="at most 1024 KiB"):
        load_manifest(tmp_path)


def test_binary_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "function.yaml").write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ProblemsError, match="not UTF-8"):
        load_manifest(tmp_path)


def test_missing_manifest_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ProblemsError, match="function manifest not found"):
        load_manifest(tmp_path)


def test_full_product_example_is_valid(tmp_path: Path) -> None:
    (tmp_path / "function.yaml").write_text(
        """
name: spb-run-summary
runtime: python:3.12
handler: summary:main
limits: {memory: 512, timeout: 90s, concurrency: 1}
env: {LOG_LEVEL: info, RETRIES: 3, DEBUG: false}
secrets: [DCACHE_TOKEN]
triggers:
  - storage:
      {source: dcache, path: /pnfs/xfel.eu/exfel/raw/SPB, recursive: true, events: [created], match: "*.h5"}
  - http: {public: false}
examples:
  - input: {counts: [0, 3, 40, 3, 0]}
    expect: {peaks: [2]}
"""
    )
    manifest = load_manifest(tmp_path)
    assert manifest.limits.timeout_ms == 90_000
    assert manifest.env == {"LOG_LEVEL": "info", "RETRIES": "3", "DEBUG": "false"}
    assert manifest.storage_triggers()[0].path == "/pnfs/xfel.eu/exfel/raw/SPB"
    assert manifest.module == "summary" and manifest.function == "main"
