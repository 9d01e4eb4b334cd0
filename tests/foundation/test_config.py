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


def test_embedded_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    s = load_settings()
    state = tmp_path / "xdg-data" / "faaspub"
    assert s.state_path == state
    assert s.database.url == f"sqlite:///{state}/faaspub.db"
    assert s.registry.url is None and s.registry.oci_layout == f"{state}/oci"
    assert s.backend.kind == "local" and s.archive.kind == "none"
    assert s.storage.local.root == f"{state}/data"
    assert s.build.cache_dir == str(tmp_path / "xdg-cache" / "faaspub")
    assert s.server.listen == "127.0.0.1:8080"


def test_state_never_defaults_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the XDG spec: relative values are invalid
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_settings().state_path == tmp_path / "home" / ".local" / "share" / "faaspub"
    monkeypatch.setenv("FAASPUB_HOME", str(tmp_path / "elsewhere"))
    s = load_settings()
    assert s.state_path == tmp_path / "elsewhere"
    assert s.database.url == f"sqlite:///{tmp_path}/elsewhere/faaspub.db"
    assert s.registry.oci_layout == f"{tmp_path}/elsewhere/oci"


def test_paths_set_explicitly_are_kept(tmp_path: Path) -> None:
    (tmp_path / "faaspub.toml").write_text(
        'state_dir = "st"\n[database]\nurl = "sqlite:///x.db"\n[storage.local]\nroot = "./data"\n'
    )
    s = load_settings()
    assert s.database.url == "sqlite:///x.db" and s.storage.local.root == "./data"
    assert s.registry.oci_layout == "st/oci"  # unset: follows state_dir


def test_configuration_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def namespace_of(text: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'namespace = "{text}"\n')
        return path

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_settings().namespace == "local"
    namespace_of("user", tmp_path / "xdg" / "faaspub" / "faaspub.toml")
    assert load_settings().namespace == "user"
    namespace_of("cwd", tmp_path / "faaspub.toml")
    assert load_settings().namespace == "cwd"
    monkeypatch.setenv("FAASPUB_CONFIG", str(namespace_of("env", tmp_path / "env.toml")))
    assert load_settings().namespace == "env"
    assert load_settings(namespace_of("flag", tmp_path / "flag.toml")).namespace == "flag"
    monkeypatch.setenv("FAASPUB_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone.toml \(FAASPUB_CONFIG\) does not exist"):
        load_settings()


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
