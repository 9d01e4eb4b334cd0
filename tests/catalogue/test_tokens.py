"""``faaspub token create|list|revoke`` and the scope model (read ⊂ invoke ⊂ admin, namespace ``*``)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from publisher.catalogue.auth import Grant, authenticate, create_token
from publisher.config import load_settings
from publisher.core.context import Context
from publisher.db.engine import transaction
from publisher.errors import FaaspubError
from tests.catalogue.conftest import ROOT, bearer
from webhooks.app import create_app


def faaspub(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "publisher.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_token_cli(tmp_path: Path) -> None:
    config = tmp_path / "faaspub.toml"
    config.write_text(f'state_dir = "{tmp_path}/state"\n[database]\nurl = "sqlite:///{tmp_path}/db.sqlite"\n')
    created = faaspub(
        config, "token", "create", "--namespace", "local", "--scope", "invoke", "-d", "ci", "--json"
    )
    assert created.returncode == 0, created.stderr
    info = json.loads(created.stdout)
    token = info["token"]
    assert token.startswith("fp_") and len(token) > 40
    assert (info["namespace"], info["scope"]) == ("local", "invoke")

    plain = faaspub(config, "token", "create", "--namespace", "*", "--scope", "admin")
    assert plain.returncode == 0
    assert "not shown again" in plain.stderr and plain.stdout.strip().startswith("fp_")

    listed = faaspub(config, "token", "list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["namespace"], r["scope"], r["description"]) for r in rows] == [
        ("local", "invoke", "ci"),
        ("*", "admin", None),
    ]
    digest = hashlib.sha256(token.encode()).hexdigest()
    for output in (listed.stdout, faaspub(config, "token", "list").stdout):
        assert token not in output and digest not in output

    # The stored hash is what authenticates; the API accepts the token until it is revoked.
    context = Context(load_settings(config))
    with TestClient(create_app(context)) as client:
        assert (
            client.post("/api/v1/functions/hello/invoke", json={}, headers=bearer(token)).status_code == 404
        )
        revoked = faaspub(config, "token", "revoke", str(info["id"]))
        assert revoked.returncode == 0, revoked.stderr
        assert (
            client.post("/api/v1/functions/hello/invoke", json={}, headers=bearer(token)).status_code == 401
        )
    context.engine.dispose()

    again = faaspub(config, "token", "revoke", str(info["id"]))
    assert again.returncode == 1 and f"token {info['id']} does not exist" in again.stderr
    bad = faaspub(config, "token", "create", "--namespace", "local", "--scope", "root")
    assert bad.returncode != 0 and "root" in bad.stderr


@pytest.mark.parametrize(
    ("granted", "namespace", "scope", "allowed"),
    [
        (("local", "read"), "local", "read", True),
        (("local", "read"), "local", "invoke", False),
        (("local", "invoke"), "local", "read", True),
        (("local", "invoke"), "local", "invoke", True),
        (("local", "invoke"), "local", "admin", False),
        (("local", "admin"), "local", "invoke", True),
        (("local", "admin"), "xfel", "read", False),
        (("*", "invoke"), "xfel", "invoke", True),
        (("*", "invoke"), "xfel", "admin", False),
        (("*", "admin"), "anything", "admin", True),
    ],
)
def test_scopes(granted: tuple[str, str], namespace: str, scope: str, allowed: bool) -> None:
    grant = Grant(1, granted[0], granted[1])  # type: ignore[arg-type]
    assert grant.allows(namespace, scope) is allowed  # type: ignore[arg-type]


def test_create_and_authenticate(tmp_path: Path) -> None:
    from tests.catalogue.conftest import make_context

    context = make_context(tmp_path)
    with transaction(context.sessions) as session:
        row, token = create_token(session, "xfel", "read")
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in repr(row.__dict__)
        with pytest.raises(FaaspubError, match="scope 'owner'"):
            create_token(session, "xfel", "owner")
        with pytest.raises(FaaspubError, match="namespace"):
            create_token(session, " ", "read")
    with transaction(context.sessions) as session:
        grant = authenticate(session, token)
        assert grant is not None and (grant.namespace, grant.scope) == ("xfel", "read")
        assert authenticate(session, token[:-1]) is None
        assert authenticate(session, "") is None
    context.engine.dispose()
