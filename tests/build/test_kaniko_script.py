"""The kaniko wrapper script, run with a stand-in executor that records what it was given."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.infra.containers import require_tool

SCRIPT = Path(__file__).resolve().parents[2] / "ci-templates" / "scripts" / "kaniko-build"

# Records argv (one per line) and the environment, then writes a digest like kaniko does.
FAKE_EXECUTOR = """#!/bin/sh
out="$RECORD_DIR"
: >"$out/args"
for a in "$@"; do printf '%s\\n' "$a" >>"$out/args"; done
env >"$out/env"
digest_file=""
while [ $# -gt 0 ]; do
  if [ "$1" = "--digest-file" ]; then digest_file="$2"; fi
  shift
done
printf 'sha256:%064d' 7 >"$digest_file"
echo "executor done"
"""


@pytest.fixture
def kaniko(tmp_path: Path) -> dict[str, Path]:
    record = tmp_path / "record"
    record.mkdir()
    executor = tmp_path / "executor"
    executor.write_text(FAKE_EXECUTOR)
    executor.chmod(0o755)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    return {"record": record, "executor": executor, "context": context, "root": tmp_path}


def run_script(kaniko: dict[str, Path], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    root = kaniko["root"]
    full_env = {
        "PATH": os.environ["PATH"],
        "RECORD_DIR": str(kaniko["record"]),
        "KANIKO_EXECUTOR": str(kaniko["executor"]),
        "DOCKER_CONFIG": str(root / "docker"),
        "KANIKO_SSL_DIR": str(root / "ssl"),
        **env,
    }
    return subprocess.run(
        ["sh", str(SCRIPT), *args], env=full_env, capture_output=True, text=True, cwd=root, timeout=30
    )


def recorded_args(kaniko: dict[str, Path]) -> list[str]:
    return (kaniko["record"] / "args").read_text().splitlines()


def test_shellcheck_clean() -> None:
    shellcheck = require_tool("shellcheck")
    proc = subprocess.run([shellcheck, "--shell=sh", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_flags_credentials_labels_and_digest(kaniko: dict[str, Path]) -> None:
    password = "pa$$-w0rd with spaces"
    ca = kaniko["root"] / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIfake\n-----END CERTIFICATE-----\n")
    ssl_dir = kaniko["root"] / "ssl"
    ssl_dir.mkdir()
    (ssl_dir / "additional-ca-cert-bundle.crt").write_text("EXISTING\n")
    proc = run_script(
        kaniko,
        "--context",
        str(kaniko["context"]),
        "--destination",
        "registry.example.org/grp/fn:1.0.0-abc",
        "--digest-file",
        str(kaniko["root"] / "digest"),
        "--label",
        "org.faaspub.doi=10.5281/zenodo.1",
        "--cache",
        "--cache-repo",
        "registry.example.org/grp/fn/cache",
        "--",
        "--insecure",
        CI_REGISTRY="registry.example.org",
        CI_REGISTRY_USER="ci-user",
        CI_REGISTRY_PASSWORD=password,
        CI_PROJECT_URL="https://gitlab.example.org/grp/fn",
        CI_COMMIT_SHA="0123abcd",
        CI_COMMIT_TIMESTAMP="2024-05-01T10:00:00+00:00",
        CI_COMMIT_TAG="v1.0.0",
        CI_PROJECT_TITLE="fn title with spaces",
        KANIKO_CA_FILE=str(ca),
    )
    assert proc.returncode == 0, proc.stderr
    digest = "sha256:" + "0" * 63 + "7"
    assert proc.stdout.strip().splitlines()[-1] == digest
    for stream in (proc.stdout, proc.stderr, (kaniko["record"] / "args").read_text()):
        assert password not in stream
        assert base64.b64encode(f"ci-user:{password}".encode()).decode() not in stream

    args = recorded_args(kaniko)
    pairs = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
    assert pairs["--context"] == str(kaniko["context"])
    assert pairs["--dockerfile"] == str(kaniko["context"] / "Dockerfile")
    assert pairs["--destination"] == "registry.example.org/grp/fn:1.0.0-abc"
    assert pairs["--cache-repo"] == "registry.example.org/grp/fn/cache"
    assert {"--reproducible", "--cache=true", "--insecure"} <= set(args)
    labels = [args[i + 1] for i, a in enumerate(args) if a == "--label"]
    assert labels == [
        "org.opencontainers.image.source=https://gitlab.example.org/grp/fn",
        "org.opencontainers.image.revision=0123abcd",
        "org.opencontainers.image.created=2024-05-01T10:00:00+00:00",
        "org.opencontainers.image.version=v1.0.0",
        "org.opencontainers.image.title=fn title with spaces",
        "org.faaspub.doi=10.5281/zenodo.1",
    ]

    config = json.loads((kaniko["root"] / "docker" / "config.json").read_text())
    auth = config["auths"]["registry.example.org"]["auth"]
    assert base64.b64decode(auth).decode() == f"ci-user:{password}"
    assert (kaniko["root"] / "docker" / "config.json").stat().st_mode & 0o077 == 0
    bundle = (ssl_dir / "additional-ca-cert-bundle.crt").read_text()
    assert bundle.startswith("EXISTING\n") and "MIIfake" in bundle


def test_no_cache_no_credentials(kaniko: dict[str, Path]) -> None:
    proc = run_script(
        kaniko,
        "--context",
        str(kaniko["context"]),
        "--destination",
        "r.example/x:1",
    )
    assert proc.returncode == 0, proc.stderr
    args = recorded_args(kaniko)
    assert not any(a.startswith("--cache") for a in args)
    assert "--label" not in args
    assert not (kaniko["root"] / "docker" / "config.json").exists()
    assert (kaniko["root"] / "image-digest").read_text().startswith("sha256:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--destination is required"),
        (("--destination", "r/x:1", "--context", "/nonexistent"), "context directory"),
        (("--destination", "r/x:1", "--label", "novalue"), "is not KEY=VALUE"),
        (("--destination", "r/x:1", "--bogus"), "unknown option '--bogus'"),
    ],
)
def test_bad_arguments(kaniko: dict[str, Path], args: tuple[str, ...], message: str) -> None:
    proc = run_script(kaniko, *args, CI_PROJECT_DIR=str(kaniko["context"]))
    assert proc.returncode == 2
    assert message in proc.stderr


def test_missing_ca_file_is_named(kaniko: dict[str, Path]) -> None:
    proc = run_script(
        kaniko,
        "--context",
        str(kaniko["context"]),
        "--destination",
        "r/x:1",
        CI_SERVER_TLS_CA_FILE="/nonexistent/ca.pem",
    )
    assert proc.returncode == 2
    assert "/nonexistent/ca.pem" in proc.stderr
