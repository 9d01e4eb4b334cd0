"""What a newcomer meets before anything runs: one-line errors, runtimes named honestly, triggers in
words, the saves ``faaspub dev`` reacts to, and the layout server engines pull from."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import requests

from publisher.cli.operate import describe_trigger
from publisher.oci.layout import OciLayout
from publisher.oci.serve import LayoutServer
from publisher.watch import relevant
from tests.e2e.stack import FAASPUB, clean_env
from tests.firstrun.machine import run


def test_an_error_is_one_line_whatever_its_length(tmp_path: Path) -> None:
    missing = tmp_path.joinpath(*[f"a-rather-long-folder-name-{i}" for i in range(8)], "faaspub.toml")
    proc = subprocess.run(
        [*FAASPUB, "status", "--config", str(missing)],
        env=clean_env({"COLUMNS": "80"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"error: configuration file {missing} does not exist"]


def test_init_and_validate_name_a_runtime_that_needs_an_outside_registry(tmp_path: Path) -> None:
    home = tmp_path / "home"
    plain = run(home, tmp_path, "init", "fine")
    assert "note:" not in plain.stderr and "next: cd fine" in plain.stderr
    assert "note:" not in run(home, tmp_path / "fine", "validate").stderr
    outside = run(home, tmp_path, "init", "older", "--runtime", "python:3.12")
    assert "note: runtime python:3.12" in outside.stderr and "Docker Hub" in outside.stderr
    checked = json.loads(run(home, tmp_path / "older", "validate", "--json").stdout)
    assert checked["ok"] and "outside registry" in checked["functions"][0]["notes"][0]


@pytest.mark.parametrize(
    ("trigger", "words"),
    [
        (
            {
                "kind": "storage",
                "source": "local",
                "path": "/incoming",
                "events": ["created"],
                "match": "*.txt",
            },
            "files created matching *.txt in local:/incoming",
        ),
        (
            {
                "kind": "storage",
                "source": "dcache",
                "path": "/pnfs/x",
                "recursive": True,
                "events": ["created", "deleted"],
                "match": "*.h5",
            },
            "files created or deleted matching *.h5 in dcache:/pnfs/x and below",
        ),
        ({"kind": "http", "source": None, "path": None, "public": True}, "http (public)"),
        ({"kind": "http", "source": None, "path": None, "public": False}, "http (with a token)"),
    ],
)
def test_triggers_in_words(trigger: dict[str, object], words: str) -> None:
    assert describe_trigger(trigger) == words


@pytest.mark.parametrize(
    ("path", "counts"),
    [
        ("handler.py", True),
        ("tests/test_handler.py", True),
        ("function.yaml", True),
        (".git/index", False),
        ("__pycache__/handler.cpython-311.pyc", False),
        (".handler.py.swp", False),
        ("handler.py~", False),
        (".#handler.py", False),
        ("4913", False),
        (".pytest_cache/v/cache", False),
    ],
)
def test_which_saves_start_a_round(tmp_path: Path, path: str, counts: bool) -> None:
    assert relevant(tmp_path, str(tmp_path / path)) is counts


def test_layout_server_answers_only_under_its_token(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "oci")
    blob = b"layer bytes"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    layout.put_blob("functions/x", blob, digest)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"})
    manifest_digest = layout.put_manifest(
        "functions/x", "1.0", manifest.encode(), "application/vnd.oci.image.manifest.v1+json"
    )
    server = LayoutServer(layout)
    try:
        host, token = server.prefix.split("/", 1)
        base = f"http://{host}/v2"
        assert requests.get(f"{base}/", timeout=5).status_code == 200
        got = requests.get(f"{base}/{token}/functions/x/blobs/{digest}", timeout=5)
        assert got.content == blob and got.headers["Docker-Content-Digest"] == digest
        man = requests.get(f"{base}/{token}/functions/x/manifests/{manifest_digest}", timeout=5)
        assert man.headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
        assert requests.head(f"{base}/{token}/functions/x/blobs/{digest}", timeout=5).status_code == 200
        wrong = "0" * 32
        assert requests.get(f"{base}/{wrong}/functions/x/blobs/{digest}", timeout=5).status_code == 404
        assert requests.get(f"{base}/{token}/functions/x/manifests/1.0", timeout=5).status_code == 404
        assert requests.get(f"{base}/_catalog", timeout=5).status_code == 404
        assert requests.post(f"{base}/{token}/functions/x/blobs/uploads/", timeout=5).status_code in (
            404,
            501,
        )
    finally:
        server.close()
