"""Replay / backfill through the CLI: each file at most once per version, and a new version reruns."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from click.testing import CliRunner

from publisher.cli.events import events
from publisher.core.context import Context
from tests.triggers.conftest import Publish
from tests.triggers.recording import RecordingBackend


def write_config(tmp_path: Path, context: Context) -> str:
    config = tmp_path / "faaspub.toml"
    config.write_text(
        f'[database]\nurl = "{context.settings.database.url}"\n'
        f'[storage.local]\nroot = "{context.settings.storage.local.root}"\n'
    )
    return str(config)


def run(args: list[str], backend: RecordingBackend) -> dict[str, object]:
    # The CLI builds its own context from --config; it gets the recording backend like the test's.
    from publisher.core import context as context_module

    original = context_module.Context.backend
    context_module.Context.backend = property(lambda self: backend)  # type: ignore[assignment,method-assign]
    try:
        result = CliRunner().invoke(events, args, catch_exceptions=False)
    finally:
        context_module.Context.backend = original  # type: ignore[method-assign]
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_replay_processes_existing_files_once_per_version(
    tmp_path: Path, context: Context, backend: RecordingBackend, publish: Publish
) -> None:
    publish("summary", [{"path": "/incoming", "match": "*.csv", "recursive": True}])
    root = Path(context.settings.storage.local.root) / "incoming"
    (root / "2025").mkdir(parents=True)
    for name in ("a.csv", "b.csv", "2025/c.csv", "notes.txt"):
        (root / name).write_text("1,2\n")
    old = root / "a.csv"
    os.utime(old, (time.time() - 86400 * 30, time.time() - 86400 * 30))
    config = write_config(tmp_path, context)
    args = ["replay", "--function", "summary", "--path", "/incoming", "--config", config, "--json"]
    first = run(args, backend)
    assert (first["scanned"], first["queued"], first["delivered"], first["skipped"]) == (4, 3, 3, 0)
    subjects = sorted(str(c["event"]["subject"]) for c in backend.calls)
    assert subjects == sorted(str(root / n) for n in ("a.csv", "b.csv", "2025/c.csv"))
    again = run(args, backend)
    assert (again["queued"], again["skipped"]) == (0, 3)
    publish("summary", [{"path": "/incoming", "match": "*.csv", "recursive": True}], version="2.0.0")
    since = run([*args, "--since", time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))], backend)
    assert (since["version"], since["queued"], since["delivered"]) == ("2.0.0", 2, 2)
    assert len(backend.calls) == 5


def test_replay_errors_name_what_is_wrong(tmp_path: Path, context: Context, publish: Publish) -> None:
    config = write_config(tmp_path, context)
    result = CliRunner().invoke(events, ["replay", "--function", "nope", "--path", "/x", "--config", config])
    assert result.exit_code != 0
    assert "function 'nope' is not published" in str(result.exception)
    publish("fn", [{"path": "/x"}])
    result = CliRunner().invoke(
        events, ["replay", "--function", "fn", "--version", "9.9.9", "--path", "/x", "--config", config]
    )
    assert "has no version '9.9.9' (known: 1.0.0)" in str(result.exception)
    result = CliRunner().invoke(
        events, ["replay", "--function", "fn", "--path", "/x", "--since", "yesterday", "--config", config]
    )
    assert "--since 'yesterday' is not a date" in str(result.exception)
