"""The ``function.yaml`` model (pydantic v2). Its JSON Schema is what ``faaspub schema`` prints."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
HANDLER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
SECRET_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
RUNTIMES = ("python:3.11", "python:3.12", "python:3.13", "docker")
# Runtimes whose base faaspub assembles on this machine from Debian packages (publisher.runtime.base);
# python:3.12 is built on the official python:3.12-slim image, which lives in an outside registry.
DEBIAN_RUNTIMES = ("python:3.11", "python:3.13")
DEFAULT_RUNTIME = "python:3.13"

# OpenWhisk's default platform bounds (contracts.md B.2); the local backend uses the same ones so a
# function that runs locally also deploys on a default OpenWhisk.
MEMORY_MIN_MB, MEMORY_MAX_MB = 128, 512
TIMEOUT_MIN_MS, TIMEOUT_MAX_MS = 100, 300_000
CONCURRENCY_MIN, CONCURRENCY_MAX = 1, 500

EventKind = Literal["created", "deleted"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000}


def parse_duration_ms(value: str | int | float) -> int:
    """``"90s"`` -> 90000. A bare number is refused: the unit is part of the meaning."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"timeout {value!r} needs a unit: write it like '90s', '500ms' or '2m'")
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"timeout {value!r} is not a duration: write it like '90s', '500ms' or '2m'")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def outside_registry(runtime: str) -> str | None:
    """Why ``runtime`` cannot be built from the Debian package mirror alone; ``None`` when it can."""
    if runtime in DEBIAN_RUNTIMES:
        return None
    local = " and ".join(DEBIAN_RUNTIMES)
    if runtime == "docker":
        return (
            "runtime docker builds your own Dockerfile: its FROM image comes from the registry it names "
            f"({local} build from Debian packages on this machine)"
        )
    python = runtime.partition(":")[2]
    return (
        f"runtime {runtime} is built on the official python:{python}-slim image from Docker Hub, an outside "
        f"registry (set registry.base_image where it is reachable; {local} build from Debian packages "
        "on this machine)"
    )


class Strict(BaseModel):
    """Unknown keys are errors (with a did-you-mean hint from the loader)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Limits(Strict):
    memory: int = Field(
        default=256,
        ge=MEMORY_MIN_MB,
        le=MEMORY_MAX_MB,
        description=f"memory in MB, {MEMORY_MIN_MB}-{MEMORY_MAX_MB} (OpenWhisk's default bounds)",
    )
    timeout: str = Field(default="60s", description="with a unit: ms, s or m; between 100ms and 5m")
    concurrency: int = Field(default=1, ge=CONCURRENCY_MIN, le=CONCURRENCY_MAX)

    @field_validator("timeout", mode="before")
    @classmethod
    def _check_timeout(cls, value: Any) -> str:
        ms = parse_duration_ms(value)
        if not TIMEOUT_MIN_MS <= ms <= TIMEOUT_MAX_MS:
            raise ValueError(
                f"timeout {value} is outside the platform bounds "
                f"{TIMEOUT_MIN_MS}ms-{TIMEOUT_MAX_MS // 60_000}m"
            )
        return str(value).strip()

    @property
    def timeout_ms(self) -> int:
        return parse_duration_ms(self.timeout)


class StorageTrigger(Strict):
    source: Literal["dcache", "s3", "local"]
    path: str = Field(min_length=1, description="absolute path (dcache, local) or bucket/prefix (s3)")
    recursive: bool = False
    events: list[EventKind] = Field(default_factory=lambda: list[EventKind](["created"]), min_length=1)
    match: str = "*"

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("path contains a NUL byte")
        if any(part == ".." for part in value.split("/")):
            raise ValueError(f"path {value!r} contains '..'")
        return value

    @field_validator("match")
    @classmethod
    def _check_match(cls, value: str) -> str:
        if not value or value.strip() != value:
            raise ValueError("match must be a non-empty glob without surrounding spaces")
        if "/" in value:
            raise ValueError(
                f"match {value!r} contains '/': it applies to the file name only, put folders in path"
            )
        if value.count("[") != value.count("]"):
            raise ValueError(f"match {value!r} has an unbalanced '[' and can never match")
        return value

    @model_validator(mode="after")
    def _check_source_path(self) -> StorageTrigger:
        if self.source in ("dcache", "local") and not self.path.startswith("/"):
            raise ValueError(f"path {self.path!r} must be absolute for source {self.source}")
        if self.source == "s3" and self.path.startswith("/"):
            raise ValueError(f"s3 path {self.path!r} must start with the bucket name, not '/'")
        return self


class HttpTrigger(Strict):
    public: bool = False


class TriggerEntry(Strict):
    """One list entry of ``triggers``: exactly one kind (``storage`` or ``http``)."""

    storage: StorageTrigger | None = None
    http: HttpTrigger | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> TriggerEntry:
        kinds = [k for k in ("storage", "http") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("each trigger needs exactly one kind: 'storage' or 'http'")
        return self


class Example(Strict):
    input: dict[str, Any] = Field(default_factory=dict)
    expect: dict[str, Any] | list[Any] | None = None
    name: str | None = None


class Tests(Strict):
    path: str = "tests"
    command: str | None = None
    requirements: str | None = Field(default=None, description="test-only requirements file, never shipped")


class Manifest(Strict):
    """One function: ``function.yaml``."""

    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits, dashes; 1-63")
    runtime: Literal["python:3.11", "python:3.12", "python:3.13", "docker"]
    handler: str = Field(pattern=HANDLER_PATTERN, description="module:function")
    description: str | None = None
    requirements: str | None = Field(default=None, description="defaults to requirements.txt when present")
    limits: Limits = Field(default_factory=Limits)
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list)
    triggers: list[TriggerEntry] = Field(default_factory=list)
    output: str | None = Field(
        default=None,
        description="the local storage folder the function writes its outputs into (absolute, like a "
        "local trigger path); on the local backend it is the only storage mounted writable, trigger "
        "folders are read-only",
    )
    tests: Tests = Field(default_factory=Tests)
    examples: list[Example] = Field(default_factory=list)
    citation: str = "CITATION.cff"

    @field_validator("output")
    @classmethod
    def _check_output(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith("/") or "\x00" in value or ".." in value.split("/"):
            raise ValueError(f"output {value!r} must be an absolute folder without '..'")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else _scalar_to_str(k, v) for k, v in value.items()}
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(SECRET_NAME_PATTERN, name):
                raise ValueError(f"secret name {name!r} must be UPPER_CASE letters, digits and underscores")
        if len(set(value)) != len(value):
            raise ValueError("secret names are listed twice")
        return value

    @model_validator(mode="after")
    def _no_secret_in_env(self) -> Manifest:
        clash = set(self.env) & set(self.secrets)
        if clash:
            raise ValueError(f"{sorted(clash)} are both env and secrets; secrets must not have values here")
        return self

    @property
    def module(self) -> str:
        return self.handler.split(":", 1)[0]

    @property
    def function(self) -> str:
        return self.handler.split(":", 1)[1]

    @property
    def python_version(self) -> str | None:
        return self.runtime.split(":", 1)[1] if self.runtime.startswith("python:") else None

    def storage_triggers(self) -> list[StorageTrigger]:
        return [t.storage for t in self.triggers if t.storage is not None]


def _scalar_to_str(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"env {key} must be a string, number or boolean, not {type(value).__name__}")


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``function.yaml`` for editors (yaml-language-server) and outside checks."""
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://faaspub.example.org/schemas/function.schema.json"
    schema["title"] = "faaspub function.yaml"
    return schema
