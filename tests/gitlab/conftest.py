"""Fixtures of the GitLab integration tests: configuration, databases, a served project with pipelines."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from publisher.config import load_settings
from publisher.core.context import Context
from publisher.oci.image import MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST, canonical_json, sha256_digest
from publisher.oci.registry import RegistryClient
from tests.fakes.gitlab_server import FakeGitLab
from tests.gitlab.parts import use_recording_parts

SPECS = Path("/work/shared/specs/gitlab-webhooks")
EXAMPLE = Path(__file__).parents[2] / "examples" / "hello"
GROUP = "fs-sc"
PROJECT_ID = 77
PROJECT = f"{GROUP}/hello"
WEBHOOK_SECRET = "hook-secret-0f3a9c"
GROUP_SECRET = "group-secret-77b1e2"
SIGNING_SECRET = "whsec_" + base64.b64encode(b"faaspub-test-signing-key-32bytes").decode()
API_TOKEN = "glpat-test-token"


def spec(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SPECS / f"{name}.json").read_text())
    return doc


@dataclass
class Env:
    """One test's configuration, context and service app."""

    config: Path
    context: Context
    client: TestClient

    def post(
        self,
        body: Any,
        token: str | None = WEBHOOK_SECRET,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        hdrs = {
            "Content-Type": "application/json",
            "X-Gitlab-Event": "Pipeline Hook",
            "Idempotency-Key": key or str(uuid.uuid4()),
            **(headers or {}),
        }
        if token is not None:
            hdrs["X-Gitlab-Token"] = token
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post("/hooks/gitlab", content=data, headers=hdrs)


def write_config(
    tmp: Path,
    db_url: str,
    gitlab_url: str = "http://127.0.0.1:9",
    registry: str = "",
    group_secrets: dict[str, str] | None = None,
) -> Path:
    """The service's configuration; ``group_secrets``: group -> its own webhook secret."""
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    for name, value in {
        "hook": WEBHOOK_SECRET,
        "signing": SIGNING_SECRET,
        "token": API_TOKEN,
    }.items():
        (secrets_dir / name).write_text(value + "\n")
    per_group = []
    for i, (group, secret) in enumerate((group_secrets or {f"{GROUP}/sub": GROUP_SECRET}).items()):
        (secrets_dir / f"group-{i}").write_text(secret + "\n")
        per_group.append(f'"{group}" = "{secrets_dir / f"group-{i}"}"')
    config = tmp / "faaspub.toml"
    config.write_text(f"""
state_dir = "{tmp / "state"}"
[server]
public_url = "https://faaspub.example.org"
max_body_bytes = 65536
[database]
url = "{db_url}"
[gitlab]
url = "{gitlab_url}"
token_file = "{secrets_dir / "token"}"
webhook_secret_file = "{secrets_dir / "hook"}"
signing_secret_file = "{secrets_dir / "signing"}"
groups = ["{GROUP}", "other-group"]
[gitlab.webhook_secret_files]
{chr(10).join(per_group)}
[storage.allowed_paths]
"{GROUP}" = ["/incoming"]
"other-group" = ["/incoming"]
[registry]
url = "{registry}"
insecure = true
credentials_file = "{tmp / "no-docker-config.json"}"
""")
    return config


def clean_postgres(context: Context) -> None:
    with context.engine.begin() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT tablename FROM pg_tables "
                    "WHERE schemaname='public' AND tablename <> 'alembic_version'"
                )
            )
        ]
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'faaspub.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def make_env(tmp_path: Path, db_url: str, *args: Any, **settings: Any) -> Env:
    """The service app on the configuration :func:`write_config` writes from these arguments."""
    from webhooks.gitlab_hooks import router
    from webhooks.metrics import router as metrics_router
    from webhooks.releases import router as releases_router

    config = write_config(tmp_path, db_url, *args, **settings)
    context = Context(load_settings(config))
    if db_url.startswith("postgresql"):
        clean_postgres(context)
    app = FastAPI()
    app.state.context = context
    app.include_router(router)
    app.include_router(releases_router)
    app.include_router(metrics_router)
    return Env(config, context, TestClient(app))


@pytest.fixture
def env(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    use_recording_parts(monkeypatch)
    made = make_env(tmp_path, db_url)
    yield made
    made.context.engine.dispose()


def push_image(registry_url: str, repository: str, tag: str) -> str:
    """A tiny image (config only) pushed to the test registry; returns its manifest digest."""
    client = RegistryClient(registry_url, insecure=True)
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Labels": {"nonce": uuid.uuid4().hex}},
        }
    )
    config_digest = sha256_digest(config)
    client.put_blob(repository, config, config_digest)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [],
        }
    )
    return client.put_manifest(repository, tag, manifest, MEDIA_OCI_MANIFEST)


def example_tree() -> dict[str, str]:
    return {
        str(p.relative_to(EXAMPLE)): p.read_text()
        for p in EXAMPLE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


JUNIT = '<testsuite name="t" tests="3" failures="0" errors="0" skipped="0"></testsuite>'


@dataclass
class Project:
    """The served project ``fs-sc/hello`` on the fake GitLab, with helpers to add pipelines."""

    fake: FakeGitLab
    registry: str

    def image(self, tag: str) -> str:
        repository = PROJECT  # GitLab CI pushes to $CI_REGISTRY_IMAGE, the project's own path
        digest = push_image(f"http://{self.registry}", repository, tag)
        return f"{self.registry}/{repository}:{tag}@{digest}"

    def tag_pipeline(
        self, tag: str = "v1.2.0", sha: str | None = None, running: bool = False
    ) -> dict[str, Any]:
        """A tag pipeline; ``running``: still in its ``faaspub:release`` job (which notifies the service)."""
        sha = sha or secrets.token_hex(20)
        image = self.image(tag)
        release = {"function": "hello", "version": tag[1:], "image": image, "digest": image.split("@")[1]}
        return self.fake.add_pipeline(
            PROJECT_ID,
            sha=sha,
            ref=tag,
            tag=True,
            jobs={
                "faaspub:test": {"junit.xml": JUNIT.encode()},
                "faaspub:release": {"release.json": json.dumps(release).encode()},
            },
            tree=example_tree(),
            status="running" if running else "success",
            job_status={"faaspub:release": "running"} if running else None,
        )

    def branch_pipeline(self, ref: str, source: str = "push", sha: str | None = None) -> dict[str, Any]:
        sha = sha or secrets.token_hex(20)
        image = self.image(sha[:12])
        return self.fake.add_pipeline(
            PROJECT_ID,
            sha=sha,
            ref=ref,
            source=source,
            jobs={"faaspub:build": {"build.json": json.dumps({"image": image}).encode()}},
            tree=example_tree(),
        )


@pytest.fixture
def project(gitlab_server: FakeGitLab, registry: Any) -> Project:
    fake = gitlab_server
    served = fake.add_project(PROJECT_ID, PROJECT)
    served.files["main"] = {
        "CITATION.cff": (EXAMPLE / "CITATION.cff").read_text(),
        "README.md": "# hello\n\nA function.\n",
    }
    return Project(fake, registry.host)


def pipeline_hook(
    pipeline: dict[str, Any], mr_iid: int | None = None, branch: str | None = None
) -> dict[str, Any]:
    """The pipeline webhook body GitLab sends for ``pipeline`` (from the documented example)."""
    body = spec("pipeline_hook")
    body["object_attributes"].update(
        id=pipeline["id"],
        ref=pipeline["ref"],
        tag=pipeline["tag"],
        sha=pipeline["sha"],
        status=pipeline["status"],
        source=pipeline["source"],
    )
    body["project"].update(id=PROJECT_ID, path_with_namespace=PROJECT, default_branch="main")
    if mr_iid is None:
        body.pop("merge_request")
    else:
        body["merge_request"].update(
            iid=mr_iid, source_branch=branch, source_project_id=PROJECT_ID, target_project_id=PROJECT_ID
        )
    return body
