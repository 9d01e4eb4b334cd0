"""Configuration: a TOML file, ``FAASPUB_<SECTION>__<KEY>`` environment overrides, embedded defaults.

Every command finds the same configuration wherever it runs: ``--config FILE``, else
``FAASPUB_CONFIG``, else ``./faaspub.toml``, else ``$XDG_CONFIG_HOME/faaspub/faaspub.toml``. With no
file and no environment, the embedded defaults give a working single-machine setup whose state lives
under ``FAASPUB_HOME`` (default ``$XDG_DATA_HOME/faaspub``, i.e. ``~/.local/share/faaspub``), never
under the current directory: SQLite, a local OCI layout as registry, the watched storage ``data/``,
faaspub's private podman; plus the local backend and no archive. Downloads and built layers are
cached under ``$XDG_CACHE_HOME/faaspub``. Secrets are read from ``*_file`` keys or from the
environment and are kept as :class:`pydantic.SecretStr`, so they never print.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from publisher.errors import ConfigError

DEFAULT_CONFIG_FILE = "faaspub.toml"


def _xdg(variable: str, fallback: str) -> Path:
    """``$variable/faaspub``, or ``~/fallback/faaspub`` when the variable is unset or relative (XDG spec)."""
    value = os.environ.get(variable, "")
    base = Path(value) if value and Path(value).is_absolute() else Path.home() / fallback
    return base / "faaspub"


def faaspub_home() -> Path:
    """Where the embedded state lives: ``FAASPUB_HOME``, else ``$XDG_DATA_HOME/faaspub``."""
    home = os.environ.get("FAASPUB_HOME")
    return Path(home).expanduser() if home else _xdg("XDG_DATA_HOME", ".local/share")


def user_config_file() -> Path:
    """The user's configuration file: ``$XDG_CONFIG_HOME/faaspub/faaspub.toml``."""
    return _xdg("XDG_CONFIG_HOME", ".config") / DEFAULT_CONFIG_FILE


def cache_home() -> Path:
    """Downloads and built layers, shared by every state: ``$XDG_CACHE_HOME/faaspub``."""
    return _xdg("XDG_CACHE_HOME", ".cache")


def find_config_file(config_file: str | os.PathLike[str] | None = None) -> Path | None:
    """The configuration file in force: ``config_file``, ``FAASPUB_CONFIG``, ``./faaspub.toml``, the
    user's; ``None`` when there is none (embedded defaults). A file named explicitly must exist."""
    named = config_file or os.environ.get("FAASPUB_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            source = "" if config_file else " (FAASPUB_CONFIG)"
            raise ConfigError(f"configuration file {path}{source} does not exist")
        return path
    for candidate in (Path(DEFAULT_CONFIG_FILE), user_config_file()):
        if candidate.is_file():
            return candidate
    return None


class Section(BaseModel):
    """Base of every configuration section: unknown keys are mistakes, not silently ignored."""

    model_config = {"extra": "forbid"}


class ServerSettings(Section):
    listen: str = "127.0.0.1:8080"
    public_url: str | None = None
    log_format: Literal["text", "json"] = "text"
    max_body_bytes: int = 2 * 1024 * 1024
    catalogue_public: bool = True
    workers: int = Field(default=2, ge=0, le=64)
    # When set, GET /metrics needs "Authorization: Bearer <this token>" (Prometheus: credentials_file).
    metrics_token_file: str | None = None
    metrics_token: SecretStr | None = None

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.listen}").rstrip("/")


class DatabaseSettings(Section):
    url: str = "sqlite:///.faaspub/faaspub.db"


class GitLabSettings(Section):
    url: str | None = None
    token_file: str | None = None
    token: SecretStr | None = None
    webhook_secret_file: str | None = None
    webhook_secret: SecretStr | None = None
    # Per-group webhook tokens: group path -> file holding the token.
    webhook_secret_files: dict[str, str] = Field(default_factory=dict)
    signing_secret_file: str | None = None
    groups: list[str] = Field(default_factory=list)
    reconcile_interval_s: float = 300.0
    # Identity checks of CI job tokens (POST /api/v1/releases): their own threads and a short timeout.
    job_token_checks: int = Field(default=4, ge=1, le=64)
    job_token_timeout_s: float = Field(default=5.0, gt=0, le=60)


class RegistrySettings(Section):
    url: str | None = None
    oci_layout: str = ".faaspub/oci"
    insecure: bool = False
    credentials_file: str = "~/.docker/config.json"
    repository_prefix: str = "functions"
    base_image: str | None = None


class OpenWhiskSettings(Section):
    api_host: str | None = None
    auth_file: str | None = None
    auth: SecretStr | None = None
    namespace: str = "_"
    insecure: bool = False
    max_memory_mb: int = 512
    min_memory_mb: int = 128
    max_timeout_ms: int = 300_000
    min_timeout_ms: int = 100
    max_concurrency: int = 1


class LocalBackendSettings(Section):
    # "process" runs functions unisolated; it is never chosen by "auto".
    engine: Literal["auto", "docker", "process"] = "auto"
    docker_host: str | None = None
    idle_timeout_s: float = 600.0
    # "none": each container has a network namespace of its own (no network; the proxy is reached
    # through a unix socket); "host": functions share the host network, for those that fetch data.
    network: Literal["none", "host"] = "none"
    pids_limit: int = Field(default=256, ge=16)
    cpus: float = Field(default=1.0, gt=0)


class BackendSettings(Section):
    kind: Literal["local", "openwhisk"] = "local"
    openwhisk: OpenWhiskSettings = Field(default_factory=OpenWhiskSettings)
    local: LocalBackendSettings = Field(default_factory=LocalBackendSettings)


class ArchiveSettings(Section):
    kind: Literal["none", "zenodo", "invenio-rdm"] = "none"
    # Zenodo's legacy deposit API base, or an InvenioRDM instance's API base (``https://HOST/api``).
    url: str = "https://sandbox.zenodo.org/api"
    token_file: str | None = None
    token: SecretStr | None = None
    # One token per namespace, so records belong to the organisation: namespace -> token file.
    token_files: dict[str, str] = Field(default_factory=dict)
    communities: list[str] = Field(default_factory=list)
    timeout_s: float = 60.0


class LocalStorageSettings(Section):
    root: str = "./data"


class DcacheStorageSettings(Section):
    url: str | None = None
    token_file: str | None = None
    token: SecretStr | None = None
    macaroon_file: str | None = None
    username: str | None = None
    password_file: str | None = None
    channel_timeout_s: int = 300
    verify_tls: bool = True
    # WebDAV door the functions read files from (the events' data.url); the frontend cannot serve data.
    webdav_url: str | None = None


class S3StorageSettings(Section):
    # Notifications (POST /hooks/s3) must carry this token: Bearer, Basic password or ?token=.
    webhook_token_file: str | None = None
    webhook_token: SecretStr | None = None
    # The S3 API: data.url of events, and (with credentials_file) listings and presigned URLs.
    endpoint: str | None = None
    region: str = "us-east-1"
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    verify_tls: bool = True
    # AWS shared-credentials format; [profile] with aws_access_key_id and aws_secret_access_key.
    credentials_file: str | None = None
    profile: str = "default"
    # namespace -> buckets (or bucket/prefix) its functions may bind; "*" applies to every namespace.
    # Empty, and no credentials_file: any bucket storage.allowed_paths allows.
    buckets: dict[str, list[str]] = Field(default_factory=dict)
    reconcile_interval_s: float = Field(default=300.0, gt=0)
    presign_expiry_s: int = Field(default=3600, ge=60, le=604800)


class StorageSettings(Section):
    local: LocalStorageSettings = Field(default_factory=LocalStorageSettings)
    dcache: DcacheStorageSettings = Field(default_factory=DcacheStorageSettings)
    s3: S3StorageSettings = Field(default_factory=S3StorageSettings)
    # Previews and staging are bound under this prefix (e.g. "/pnfs/xfel.eu/staging"); unset: unbound.
    staging_prefix: str | None = None
    # namespace -> path prefixes its functions may bind, replay and list; "*" applies to every
    # namespace. Unset: nothing when GitLab serves groups, everything for the embedded namespace.
    allowed_paths: dict[str, list[str]] | None = None


class BuildSettings(Section):
    builder: Literal["native", "buildah", "kaniko"] = "native"
    cache_dir: str = ".faaspub/cache"
    python_platform: str = "manylinux2014_x86_64"


class ProvenanceSettings(Section):
    """Signing and checking build provenance (docs/provenance.md; key names are stable)."""

    signing_key_file: str | None = None  # Ed25519 private key, PEM (PKCS#8)
    verify_key_file: str | None = None  # the public key images must verify with, PEM
    require_signed: bool = False  # deploys refuse images whose provenance does not verify
    # Without signing_key_file: make a per-installation key under state_dir on first use (embedded
    # mode signs too). CI jobs turn this off: a key made in a throwaway job would prove nothing.
    generate_key: bool = True


class NamespaceSecrets(Section):
    """The secrets one namespace was granted: a folder with one file per secret name."""

    dir: str
    # function name -> the secret names it may get; unset: every function of the namespace gets all.
    functions: dict[str, list[str]] | None = None


class SecretsSettings(Section):
    """Where function secrets (names in function.yaml) get their values at run time.

    ``dir`` (and ``FAASPUB_SECRET_<NAME>``) serve the embedded namespace (``namespace``) only;
    every other namespace gets only what ``[secrets.namespaces.<ns>]`` grants it.
    """

    dir: str | None = None
    namespaces: dict[str, NamespaceSecrets] = Field(default_factory=dict)


class CatalogueSettings(Section):
    """How the catalogue presents functions."""

    # Functions of this namespace are the facility's standard functions (functions/ of this
    # repository), listed apart as "provided by the facility". Only the operator decides what is in it.
    facility_namespace: str = "facility"


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="FAASPUB_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    namespace: str = "local"
    # Unset paths below (database, OCI layout, storage root) follow it; see _derive_state_paths.
    state_dir: str = Field(default_factory=lambda: str(faaspub_home()))
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    gitlab: GitLabSettings = Field(default_factory=GitLabSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    backend: BackendSettings = Field(default_factory=BackendSettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    build: BuildSettings = Field(default_factory=BuildSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    catalogue: CatalogueSettings = Field(default_factory=CatalogueSettings)
    provenance: ProvenanceSettings = Field(default_factory=ProvenanceSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, which arrives as init arguments.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _derive_state_paths(self) -> Settings:
        """Paths nobody set live under ``state_dir``, so one setting moves the whole embedded state."""
        self.state_dir = str(Path(self.state_dir).expanduser())
        state = self.state_dir.rstrip("/") or "/"
        if "url" not in self.database.model_fields_set:
            self.database.url = f"sqlite:///{state}/faaspub.db"
        if "oci_layout" not in self.registry.model_fields_set:
            self.registry.oci_layout = f"{state}/oci"
        if "root" not in self.storage.local.model_fields_set:
            self.storage.local.root = f"{state}/data"
        if "cache_dir" not in self.build.model_fields_set:
            self.build.cache_dir = str(cache_home())
        return self

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)


def load_settings(config_file: str | os.PathLike[str] | None = None) -> Settings:
    """The configuration from the file :func:`find_config_file` names, with environment overrides."""
    data: dict[str, Any] = {}
    path = find_config_file(config_file)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{path or 'environment'}: [{where}] {first['msg']}",
            hint="see the configuration reference in README.md; env overrides are FAASPUB_<SECTION>__<KEY>",
        ) from None


def read_secret(value: SecretStr | None, file: str | None, what: str) -> str | None:
    """The secret from the environment value, else from ``file``; ``None`` when neither is set.

    The error names the setting and the file, never the content.
    """
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if not file:
        return None
    path = Path(file).expanduser()
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} from {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{what} file {path} is empty")
    return text


def redacted(settings: Settings) -> dict[str, Any]:
    """The configuration as a dict with every secret shown as ``'**********'``."""
    return settings.model_dump(mode="json")
