"""An InvenioRDM test server: the native records API (``/api/records``) as zenodo.md §2 describes it.

Built on the Zenodo test server's HTTP plumbing (auth, fault injection, error shape); the routes are
InvenioRDM's: drafts at ``/records/{id}/draft``, DOI reservation (``pids/doi``, refused twice),
three-step files (declare, content, commit; a pending or duplicate key is refused), new versions
without files or version number (a second call returns the open draft), publish validation
(required metadata, committed files, reserved DOI), ``versions/latest`` as a redirect, and the
user's drafts under ``/user/records``. Ids are generic InvenioRDM PIDs (``abcde-fgh12``), not numbers.
Metadata is checked as RDM's schema does: unknown top-level keys, resource type, creators'
``person_or_org``, rights, related identifiers (scheme and relation type), EDTF dates.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from tests.fakes.zenodo_server import (
    LICENSES,
    RELATION_BY_LOWER,
    Faults,
    Handler,
    Seen,
    ValidationFailed,
    ZenodoServer,
    error,
    now,
    orcid_valid,
)

DOI_PREFIX = "10.80828"  # a facility's DataCite prefix (test value)
TOP_LEVEL = {"access", "files", "metadata", "custom_fields", "pids", "media_files"}
RESOURCE_TYPES = {"software", "dataset", "publication-article", "other"}
DESCRIPTION_TYPES = {"abstract", "methods", "seriesinformation", "tableofcontents", "technicalinfo", "other"}
_EDTF = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass
class StoredFile:
    key: str
    data: bytes = b""
    committed: bool = False

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest()


@dataclass
class Record:
    id: str
    parent: str
    owner: int
    metadata: dict[str, Any]
    access: dict[str, Any] = field(default_factory=dict)
    files: dict[str, StoredFile] = field(default_factory=dict)
    doi: str | None = None
    published: bool = False
    version_index: int = 0
    created: str = field(default_factory=now)


class InvenioFake:
    """In-memory InvenioRDM state; the attributes the shared plumbing reads match ``ZenodoFake``."""

    auth_mode = "rdm"
    error_shape = "rdm"

    def __init__(self, tokens: dict[str, tuple[int, set[str]]] | None = None) -> None:
        self.tokens = tokens if tokens is not None else {"rdm-secret-token": (1, {"user"})}
        self.faults = Faults()
        self.records: dict[str, Record] = {}
        self.parent_dois: dict[str, str] = {}
        self.seen: list[Seen] = []
        self.lock = threading.RLock()
        self._random = random.Random(21)

    # -- inspection helpers for tests ------------------------------------------------------------

    def drafts(self) -> list[Record]:
        with self.lock:
            return [r for r in self.records.values() if not r.published]

    def published(self) -> list[Record]:
        with self.lock:
            return sorted((r for r in self.records.values() if r.published), key=lambda r: r.version_index)

    def parents(self) -> set[str]:
        with self.lock:
            return {r.parent for r in self.records.values()}

    # -- ids and serialisation -------------------------------------------------------------------

    def new_id(self) -> str:
        while True:
            text = "".join(self._random.choice(_ID_ALPHABET) for _ in range(10))
            pid = f"{text[:5]}-{text[5:]}"
            if pid not in self.records and pid not in self.parent_dois:
                return pid

    def latest(self, parent: str) -> Record | None:
        versions = [r for r in self.records.values() if r.parent == parent and r.published]
        return max(versions, key=lambda r: r.version_index) if versions else None

    def record_json(self, base: str, rec: Record) -> dict[str, Any]:
        html = base.removesuffix("/api")
        api = f"{base}/records/{rec.id}"
        draft = not rec.published
        links = {
            "self": f"{api}/draft" if draft else api,
            "self_html": f"{html}/uploads/{rec.id}" if draft else f"{html}/records/{rec.id}",
            "files": f"{api}/draft/files" if draft else f"{api}/files",
            "versions": f"{api}/versions",
            "latest": f"{api}/versions/latest",
        }
        if draft:
            links.update(publish=f"{api}/draft/actions/publish", reserve_doi=f"{api}/draft/pids/doi")
        parent: dict[str, Any] = {"id": rec.parent}
        if rec.parent in self.parent_dois:
            parent["pids"] = {"doi": {"identifier": self.parent_dois[rec.parent], "provider": "datacite"}}
        return {
            "id": rec.id,
            "created": rec.created,
            "updated": now(),
            "is_published": rec.published,
            "is_draft": draft,
            "status": "draft" if draft else "published",
            "access": rec.access,
            "files": {"enabled": True, "count": len(rec.files)},
            "metadata": rec.metadata,
            "parent": parent,
            "pids": {"doi": {"identifier": rec.doi, "provider": "datacite", "client": "datacite"}}
            if rec.doi
            else {},
            "versions": {"index": rec.version_index, "is_latest": self.latest(rec.parent) is rec},
            "links": links,
        }

    def file_json(self, base: str, rec: Record, f: StoredFile) -> dict[str, Any]:
        where = f"{base}/records/{rec.id}/{'draft/' if not rec.published else ''}files/{quote(f.key)}"
        entry: dict[str, Any] = {
            "key": f.key,
            "status": "completed" if f.committed else "pending",
            "links": {"self": where, "content": f"{where}/content", "commit": f"{where}/commit"},
        }
        if f.committed:
            entry.update(checksum=f"md5:{f.md5}", size=len(f.data))
        return entry

    # -- validation ------------------------------------------------------------------------------

    def clean(self, body: Any) -> dict[str, Any]:
        """RDM's schema on save: unknown top-level keys and malformed values are refused."""
        if not isinstance(body, dict):
            raise ValidationFailed([("_schema", "Invalid input type.")])
        unknown = sorted(set(body) - TOP_LEVEL)
        if unknown:
            raise ValidationFailed([(k, "Unknown field.") for k in unknown])
        md = body.get("metadata", {})
        if not isinstance(md, dict):
            raise ValidationFailed([("metadata", "Not a valid mapping type.")])
        errors: list[tuple[str, str]] = []
        rtype = md.get("resource_type")
        if rtype is not None and (not isinstance(rtype, dict) or rtype.get("id") not in RESOURCE_TYPES):
            errors.append(("metadata.resource_type", "Invalid value."))
        if "publication_date" in md and not _EDTF.match(str(md["publication_date"])):
            errors.append(("metadata.publication_date", "Please provide a valid date or interval."))
        for i, creator in enumerate(md.get("creators") or []):
            errors += _creator_errors(i, creator)
        for i, right in enumerate(md.get("rights") or []):
            if not isinstance(right, dict) or str(right.get("id", "")).lower() not in LICENSES:
                errors.append((f"metadata.rights.{i}.id", f"Invalid license: {right}"))
        for i, item in enumerate(md.get("related_identifiers") or []):
            errors += _related_errors(i, item)
        for i, item in enumerate(md.get("additional_descriptions") or []):
            if not isinstance(item, dict) or (item.get("type") or {}).get("id") not in DESCRIPTION_TYPES:
                errors.append((f"metadata.additional_descriptions.{i}.type", "Invalid value."))
        if errors:
            raise ValidationFailed(errors)
        return body

    def check_publishable(self, rec: Record) -> None:
        md, errors = rec.metadata, []
        for key in ("resource_type", "title", "publication_date"):
            if not md.get(key):
                errors.append((f"metadata.{key}", "Missing data for required field."))
        if not md.get("creators"):
            errors.append(("metadata.creators", "Missing data for required field."))
        if not rec.files:
            errors.append(
                (
                    "files.enabled",
                    "Missing uploaded files. To disable files for this record please mark it as "
                    "metadata-only.",
                )
            )
        if any(not f.committed for f in rec.files.values()):
            errors.append(("files", "One or more files have not completed their transfer."))
        if errors:
            raise ValidationFailed(errors)


def _creator_errors(i: int, creator: Any) -> list[tuple[str, str]]:
    where = f"metadata.creators.{i}.person_or_org"
    entity = creator.get("person_or_org") if isinstance(creator, dict) else None
    if not isinstance(entity, dict):
        return [(where, "Missing data for required field.")]
    errors = []
    if entity.get("type") == "personal" and not entity.get("family_name"):
        errors.append((f"{where}.family_name", "Family name must be filled."))
    elif entity.get("type") == "organizational" and not entity.get("name"):
        errors.append((f"{where}.name", "Name cannot be blank."))
    elif entity.get("type") not in ("personal", "organizational"):
        errors.append((f"{where}.type", "Invalid value."))
    for ident in entity.get("identifiers") or []:
        if ident.get("scheme") == "orcid" and not orcid_valid(str(ident.get("identifier", ""))):
            errors.append((f"{where}.identifiers", f"Invalid ORCID identifier {ident.get('identifier')}."))
    return errors


def _related_errors(i: int, item: Any) -> list[tuple[str, str]]:
    where = f"metadata.related_identifiers.{i}"
    if not isinstance(item, dict):
        return [(where, "Invalid input type.")]
    errors = []
    if item.get("scheme") not in ("doi", "url", "swh", "arxiv"):
        errors.append((f"{where}.scheme", "Invalid scheme."))
    elif item["scheme"] == "url" and not str(item.get("identifier", "")).startswith(("http://", "https://")):
        errors.append((f"{where}.identifier", "Invalid url identifier."))
    if str((item.get("relation_type") or {}).get("id")) not in RELATION_BY_LOWER:
        errors.append((f"{where}.relation_type", "Invalid relation type."))
    return errors


class InvenioHandler(Handler):
    """Routes ``/api`` onto :class:`InvenioFake` (shared plumbing from the Zenodo test server)."""

    def _own(self, record_id: str, user: int, draft: bool) -> Record:
        rec = self.fake.records.get(record_id)
        if rec is None or (draft and rec.published) or (not draft and not rec.published):
            raise error(404, "The persistent identifier does not exist.")
        if rec.owner != user:
            raise error(403, "Permission denied.")
        return rec

    def _route(self, path: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        method, fake = self.command, self.fake
        if m := re.fullmatch(
            r"/api/records/([a-z0-9-]+)(/versions/latest|/files|/files/([^/]+)/content)?", path
        ):
            rec = fake.records.get(m.group(1))
            if method == "GET" and rec is not None and rec.published:
                if m.group(2) == "/versions/latest":
                    latest = fake.latest(rec.parent)
                    assert latest is not None
                    return 302, b"", {"Location": f"{self.base}/records/{latest.id}"}
                if m.group(2) == "/files":
                    return (
                        200,
                        {"entries": [fake.file_json(self.base, rec, f) for f in rec.files.values()]},
                        {},
                    )
                if m.group(3):
                    stored = rec.files.get(unquote(m.group(3)))
                    if stored is None:
                        raise error(404, "File not found.")
                    return 200, stored.data, {"Content-Type": "application/octet-stream"}
                return 200, fake.record_json(self.base, rec), {}
            if method == "GET" or m.group(2):
                raise error(404, "The persistent identifier does not exist.")
        if path == "/api/records" and method == "GET":
            return 200, self._search(), {}
        user, _scopes = self._user()
        if path == "/api/records" and method == "POST":
            return 201, self._create(user, body), {}
        if path == "/api/user/records" and method == "GET":
            return 200, self._user_records(user), {}
        if m := re.fullmatch(r"/api/records/([a-z0-9-]+)/draft", path):
            return self._draft(self._own(m.group(1), user, draft=True), body)
        if m := re.fullmatch(r"/api/records/([a-z0-9-]+)/draft/pids/doi", path):
            return self._reserve(self._own(m.group(1), user, draft=True))
        if m := re.fullmatch(r"/api/records/([a-z0-9-]+)/draft/files(?:/([^/]+)(/content|/commit)?)?", path):
            rec = self._own(m.group(1), user, draft=True)
            key = unquote(m.group(2)) if m.group(2) else None
            return self._files(rec, key, m.group(3), body)
        if m := re.fullmatch(r"/api/records/([a-z0-9-]+)/draft/actions/publish", path):
            return self._publish(self._own(m.group(1), user, draft=True))
        if m := re.fullmatch(r"/api/records/([a-z0-9-]+)/versions", path):
            if method != "POST":
                raise error(405, "Method not allowed.")
            return 201, self._new_version(self._own(m.group(1), user, draft=False)), {}
        raise error(404, "The requested URL was not found on the server.")

    def _search(self) -> dict[str, Any]:
        wanted = re.fullmatch(r'pids\.doi\.identifier:"([^"]+)"', self.query.get("q", ""))
        hits = [r for r in self.fake.published() if wanted is None or r.doi == wanted.group(1)]
        return {"hits": {"hits": [self.fake.record_json(self.base, r) for r in hits], "total": len(hits)}}

    def _user_records(self, user: int) -> dict[str, Any]:
        q = self.query.get("q", "")
        found = [
            r
            for r in self.fake.records.values()
            if r.owner == user and (q != "is_published:false" or not r.published)
        ]
        found.sort(key=lambda r: r.created, reverse=True)
        hits = [self.fake.record_json(self.base, r) for r in found[: int(self.query.get("size", 10))]]
        return {"hits": {"hits": hits, "total": len(found)}}

    def _create(self, user: int, body: bytes) -> dict[str, Any]:
        data = self.fake.clean(self._json_body(body))
        rec = Record(
            self.fake.new_id(), self.fake.new_id(), user, data.get("metadata", {}), data.get("access", {})
        )
        self.fake.records[rec.id] = rec
        return self.fake.record_json(self.base, rec)

    def _draft(self, rec: Record, body: bytes) -> tuple[int, Any, dict[str, str]]:
        if self.command == "GET":
            return 200, self.fake.record_json(self.base, rec), {}
        if self.command == "PUT":
            data = self.fake.clean(self._json_body(body))
            rec.metadata, rec.access = data.get("metadata", {}), data.get("access", rec.access)
            return 200, self.fake.record_json(self.base, rec), {}
        if self.command == "DELETE":
            del self.fake.records[rec.id]
            return 204, None, {}
        raise error(405, "Method not allowed.")

    def _reserve(self, rec: Record) -> tuple[int, Any, dict[str, str]]:
        if self.command != "POST":
            raise error(405, "Method not allowed.")
        if rec.doi:
            raise ValidationFailed([("pids.doi", "A PID already exists for type doi")])
        rec.doi = f"{DOI_PREFIX}/{rec.id}"
        return 201, self.fake.record_json(self.base, rec), {}

    def _files(
        self, rec: Record, key: str | None, action: str | None, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        method, fake = self.command, self.fake
        if key is None:
            if method == "GET":
                return 200, {"entries": [fake.file_json(self.base, rec, f) for f in rec.files.values()]}, {}
            if method != "POST":
                raise error(405, "Method not allowed.")
            items = self._json_body(body)
            if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("key") for i in items):
                raise ValidationFailed([("_schema", "Expected a list of objects with a key.")])
            for item in items:
                if item["key"] in rec.files:
                    raise error(400, f"File with key {item['key']} already exists.")
                rec.files[item["key"]] = StoredFile(item["key"])
            declared = [fake.file_json(self.base, rec, rec.files[i["key"]]) for i in items]
            return 201, {"entries": declared}, {}
        stored = rec.files.get(key)
        if stored is None:
            raise error(404, "File not found.")
        if action == "/content" and method == "PUT":
            if stored.committed:
                raise error(400, "File is already committed.")
            if fake.faults.corrupt_uploads > 0:
                fake.faults.corrupt_uploads -= 1
                body = body[:-1] + bytes([(body[-1] + 1) % 256]) if body else b"x"
            stored.data = body
            return 200, fake.file_json(self.base, rec, stored), {}
        if action == "/commit" and method == "POST":
            stored.committed = True
            return 200, fake.file_json(self.base, rec, stored), {}
        if action is None and method == "DELETE":
            del rec.files[key]
            return 204, None, {}
        if action is None and method == "GET":
            return 200, fake.file_json(self.base, rec, stored), {}
        raise error(405, "Method not allowed.")

    def _publish(self, rec: Record) -> tuple[int, Any, dict[str, str]]:
        fake = self.fake
        if self.command != "POST":
            raise error(405, "Method not allowed.")
        fake.check_publishable(rec)
        if not rec.doi:
            raise ValidationFailed([("pids.doi", "Missing DOI for required field.")])
        latest = fake.latest(rec.parent)
        rec.version_index = latest.version_index + 1 if latest else 1
        rec.published = True
        fake.parent_dois.setdefault(rec.parent, f"{DOI_PREFIX}/{rec.parent}")
        answer = fake.record_json(self.base, rec)
        if fake.faults.publish_then_504 > 0:
            fake.faults.publish_then_504 -= 1
            return (
                504,
                b"<html><body><h1>504 Gateway Time-out</h1></body></html>",
                {"Content-Type": "text/html"},
            )
        return 202, answer, {}

    def _new_version(self, rec: Record) -> dict[str, Any]:
        fake = self.fake
        if fake.latest(rec.parent) is not rec:
            raise error(400, "A new version can only be created from the latest version.")
        # InvenioRDM keeps one next draft per parent and hands it out again.
        existing = next(
            (r for r in fake.records.values() if r.parent == rec.parent and not r.published), None
        )
        if existing is not None:
            return fake.record_json(self.base, existing)
        metadata = {k: v for k, v in rec.metadata.items() if k not in ("version", "publication_date")}
        draft = Record(fake.new_id(), rec.parent, rec.owner, metadata, dict(rec.access))
        fake.records[draft.id] = draft
        return fake.record_json(self.base, draft)


class InvenioServer(ZenodoServer):
    """The fake InvenioRDM on a random loopback port; ``url`` is the API base."""

    handler = InvenioHandler

    def __init__(self, fake: InvenioFake | None = None) -> None:
        super().__init__(fake or InvenioFake())
