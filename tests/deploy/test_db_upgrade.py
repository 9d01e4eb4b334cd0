"""``faaspub db upgrade``, as a migration job runs it: in its own process, idempotent, several at once
on one new PostgreSQL database without a race, and a one-line error that never shows the password."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path


def faaspub(*args: str, cwd: Path, database: str) -> subprocess.Popen[str]:
    env = {**os.environ, "FAASPUB_DATABASE__URL": database}
    return subprocess.Popen(
        [sys.executable, "-m", "publisher.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_upgrade_then_nothing_left_to_do(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'state' / 'faaspub.db'}"
    code, out, err = finished(faaspub("db", "upgrade", "--json", cwd=tmp_path, database=database))
    assert code == 0, err
    first = json.loads(out)
    assert first["before"] == [] and first["upgraded"] and first["after"]
    code, out, err = finished(faaspub("db", "upgrade", cwd=tmp_path, database=database))
    assert code == 0 and out == "" and "already at " + ", ".join(first["after"]) in err


def test_several_upgrades_at_once_on_one_new_database(tmp_path: Path, empty_pg_url: str) -> None:
    """Replicas and the migration job starting together: one upgrades, the others wait and find it done."""
    procs = [faaspub("db", "upgrade", "--json", cwd=tmp_path, database=empty_pg_url) for _ in range(3)]
    results = [finished(p) for p in procs]
    assert all(code == 0 for code, _, _ in results), [err for _, _, err in results]
    docs = [json.loads(out) for _, out, _ in results]
    assert sum(d["upgraded"] for d in docs) == 1
    assert len({tuple(d["after"]) for d in docs}) == 1


def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    password = "pw-" + secrets.token_hex(8)
    database = f"postgresql://faaspub:{password}@127.0.0.1:1/faaspub"
    code, out, err = finished(faaspub("db", "upgrade", cwd=tmp_path, database=database))
    assert code == 1 and out == ""
    assert err.startswith("error: cannot upgrade the database: ") and password not in err
