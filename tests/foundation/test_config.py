"""Configuration: embedded defaults, TOML file, FAASPUB_* overrides, secrets that never print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from publisher.config import load_settings, read_secret, redacted
from publisher.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for key in list(__import__("os").environ):
        if key.startswith("FAASPUB_"):
            monkeypatch.delenv(key)


def test_embedded_defaults_without_any_file() -> None:
    s = load_settings()
    assert s.database.url == "sqlite:///.faaspub/faaspub.db"
    assert s.registry.url is None and s.registry.oci_layout == ".faaspub/oci"
    assert s.backend.kind == "local" and s.archive.kind == "none"
    assert s.storage.local.root == "./data"
    assert s.server.listen == "127.0.0.1:8080"


def test_file_then_environment_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "faaspub.toml").write_text(
        '[backend]\nkind = "openwhisk"\n[backend.openwhisk]\napi_host = "https://ow.example.org"\n'
        '[gitlab]\ngroups = ["fs-sc"]\n'
    )
    monkeypatch.setenv("FAASPUB_BACKEND__OPENWHISK__NAMESPACE", "xfel")
    monkeypatch.setenv("FAASPUB_SERVER__LISTEN", "127.0.0.1:9999")
    s = load_settings()
    assert s.backend.kind == "openwhisk"
    assert s.backend.openwhisk.api_host == "https://ow.example.org"
    assert s.backend.openwhisk.namespace == "xfel"
    assert s.server.port == 9999 and s.gitlab.groups == ["fs-sc"]


def test_unknown_key_names_the_section(tmp_path: Path) -> None:
    (tmp_path / "faaspub.toml").write_text('[backend]\nkindd = "local"\n')
    with pytest.raises(ConfigError, match=r"\[backend.kindd\]"):
        load_settings()


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[server\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_secrets_from_file_or_env_and_never_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "gitlab-token"
    token_file.write_text("glpat-SECRET-VALUE\n")
    (tmp_path / "faaspub.toml").write_text(f'[gitlab]\ntoken_file = "{token_file}"\n')
    monkeypatch.setenv("FAASPUB_ARCHIVE__TOKEN", "zenodo-SECRET")
    s = load_settings()
    assert read_secret(s.gitlab.token, s.gitlab.token_file, "GitLab token") == "glpat-SECRET-VALUE"
    assert read_secret(s.archive.token, s.archive.token_file, "Zenodo token") == "zenodo-SECRET"
    shown = json.dumps(redacted(s)) + repr(s) + str(s)
    assert "SECRET" not in shown


def test_unreadable_secret_names_the_file_not_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read Zenodo token from .*nope"):
        read_secret(None, str(tmp_path / "nope"), "Zenodo token")
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_secret(None, str(tmp_path / "empty"), "Zenodo token")
