"""Response models of the catalogue API (``/api/v1``); they are also the OpenAPI description."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class ErrorOut(BaseModel):
    """Every error answer: what was wrong, and what to do about it when known."""

    error: str
    hint: str | None = None


class Page(BaseModel, Generic[T]):
    """One page of a listing; ``next`` is the URL of the following page, ``None`` on the last."""

    items: list[T]
    next_cursor: str | None = None
    next: str | None = None


class TriggerOut(BaseModel):
    """A trigger as bound at deploy time."""

    kind: str
    source: str | None = None
    path: str | None = None
    recursive: bool = False
    events: list[str] = Field(default_factory=list)
    match: str = "*"
    public: bool = False


class FunctionSummary(BaseModel):
    """A function as listed and searched."""

    namespace: str
    name: str
    description: str | None = None
    keywords: list[str] = Field(default_factory=list)
    alias_version: str | None = None
    image: str | None = Field(default=None, description="image of the live version (pinned by digest)")
    digest: str | None = Field(default=None, description="image digest of the live version")
    doi: str | None = Field(default=None, description="DOI of the live version")
    concept_doi: str | None = None
    project: str | None = None
    updated: datetime | None = None


class Citations(BaseModel):
    """Ready-to-paste references of one version."""

    bibtex: str
    apa: str
    cff: str
    codemeta: dict[str, Any]


class FunctionDetail(FunctionSummary):
    """One function with its triggers and the citation of the version its alias points at."""

    source_url: str | None = None
    created: datetime | None = None
    triggers: list[TriggerOut] = Field(default_factory=list)
    citation: Citations | None = None


class ProvenanceOut(BaseModel):
    """The outcome of the version's provenance check at release."""

    verified: bool
    key_id: str | None = Field(default=None, description="the key its signed provenance verified with")
    doi: str | None = None
    reason: str | None = Field(default=None, description="why it did not verify")


class VersionOut(BaseModel):
    """An immutable version of a function."""

    version: str
    doi: str | None = None
    image: str
    digest: str
    commit: str | None = None
    runtime: str
    test_summary: dict[str, int] = Field(default_factory=dict)
    state: str
    created: datetime | None = None
    current: bool = Field(description="the alias (the function's name) points at this version")
    namespace: str
    function: str
    provenance: ProvenanceOut | None = None
    sbom_components: int | None = Field(default=None, description="components its SBOM lists")


class ActivationOut(BaseModel):
    """One run of a function version."""

    id: str
    namespace: str
    function: str
    version: str
    digest: str
    start: datetime
    duration_ms: float
    status: str
    cause: str | None = None
    memory_mb: int | None = Field(default=None, description="The version's memory limit (accounting)")
    bytes_read: int | None = Field(default=None, description="Size of the file that triggered the run")


class ActivationDetail(ActivationOut):
    """One run with its result and logs."""

    result: Any = None
    logs: list[str] = Field(default_factory=list)


class EventDeliveryOut(BaseModel):
    """A storage event on its way to one function version (``dead`` = dead letter)."""

    id: int
    namespace: str
    function: str
    version: str
    digest: str
    origin: str
    status: str
    attempts: int
    activation_id: str | None = None
    last_error: str | None = None
    path: str
    kind: str
    source: str
    size: int | None = None
    created: datetime | None = None
    updated: datetime | None = None


class WebhookDeliveryOut(BaseModel):
    """A received webhook delivery and what became of it."""

    id: int
    source: str
    event: str | None = None
    project: str | None = None
    outcome: str
    detail: str | None = None
    received: datetime | None = None
    answer_ms: float | None = None


class RollbackIn(BaseModel):
    """Which version the alias should point at."""

    version: str = Field(min_length=1, max_length=64)


class ReplayIn(BaseModel):
    """What to reprocess: files under ``path`` with one version (the alias version by default)."""

    path: str = Field(min_length=1, max_length=1024)
    version: str | None = Field(default=None, max_length=64)
    since: datetime | None = None
    source: str | None = Field(default=None, pattern="^(local|dcache)$")
