"""A Zenodo test server: the legacy deposit API as Zenodo-RDM runs it (zenodo.md §1.8 checklist).

It runs on ``http.server`` in a thread on a random loopback port and keeps everything in memory.
Behaviour follows the running service where it differs from the docs (204 on delete, 404 when
editing or re-publishing a published record, 403 without a token, 400 on a second open new-version
draft, the new draft as newversion answer); ``auth_mode="docs"``, ``newversion_mode="docs"`` and
``error_shape="legacy"`` switch to the documented variants. Fault knobs (``Faults``) inject 429s
with ``Retry-After``, 5xx answers, a publish that publishes and then times out or answers 504, a
missing bucket link and corrupted uploads.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PROD_PREFIX, SANDBOX_PREFIX = "10.5281", "10.5072"
RATE_LIMIT = 100
UPLOAD_TYPES = {
    "publication",
    "poster",
    "presentation",
    "dataset",
    "image",
    "video",
    "software",
    "lesson",
    "physicalobject",
    "other",
}
ACCESS_RIGHTS = {"open", "embargoed", "restricted", "closed"}
# A subset of Zenodo's license vocabulary (lower-case SPDX ids) and the legacy ids it answers with.
LICENSES = {
    "mit",
    "apache-2.0",
    "bsd-2-clause",
    "bsd-3-clause",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc0-1.0",
    "gpl-2.0-only",
    "gpl-3.0-only",
    "gpl-3.0-or-later",
    "lgpl-3.0-only",
    "lgpl-2.1-or-later",
    "mpl-2.0",
    "agpl-3.0-only",
    "eupl-1.2",
    "isc",
    "unlicense",
}
LEGACY_LICENSE_IDS = {"cc0-1.0": "cc-zero", "cc-by-4.0": "cc-by-4.0"}
RELATIONS = [
    "isCitedBy",
    "cites",
    "isSupplementTo",
    "isSupplementedBy",
    "isContinuedBy",
    "continues",
    "isDescribedBy",
    "describes",
    "hasMetadata",
    "isMetadataFor",
    "isNewVersionOf",
    "isPreviousVersionOf",
    "isPartOf",
    "hasPart",
    "isReferencedBy",
    "references",
    "isDocumentedBy",
    "documents",
    "isCompiledBy",
    "compiles",
    "isVariantFormOf",
    "isOriginalFormOf",
    "isIdenticalTo",
    "isAlternateIdentifier",
    "isReviewedBy",
    "reviews",
    "isDerivedFrom",
    "isSourceOf",
    "requires",
    "isRequiredBy",
    "isObsoletedBy",
    "obsoletes",
    "hasVersion",
    "isVersionOf",
    "isPublishedIn",
]
RELATION_BY_LOWER = {r.lower(): r for r in RELATIONS}
METADATA_KEYS = {
    "upload_type",
    "publication_type",
    "image_type",
    "publication_date",
    "title",
    "creators",
    "description",
    "access_right",
    "license",
    "embargo_date",
    "access_conditions",
    "doi",
    "prereserve_doi",
    "keywords",
    "notes",
    "related_identifiers",
    "contributors",
    "references",
    "communities",
    "grants",
    "subjects",
    "version",
    "language",
    "locations",
    "dates",
    "method",
}
_SCHEMES = [  # identifier scheme detection, as RDM's idutils does for related identifiers
    ("doi", re.compile(r"^(doi:|https?://(dx\.)?doi\.org/)?10\.\d{4,9}/\S+$", re.I)),
    ("url", re.compile(r"^https?://[^\s/]+\S*$", re.I)),
    ("arxiv", re.compile(r"^arXiv:\d{4}\.\d{4,5}(v\d+)?$", re.I)),
    ("swh", re.compile(r"^swh:1:(cnt|dir|rel|rev|snp):[0-9a-f]{40}$")),
]
ORCID = re.compile(r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")
NO_TOKEN = (
    "The server could not verify that you are authorized to access the URL requested. You either "
    "supplied the wrong credentials (e.g. a bad password), or your browser doesn't understand how "
    "to supply the credentials required."
)
NOT_FOUND = "The persistent identifier does not exist."


def orcid_valid(value: str) -> bool:
    """ISO 7064 11,2 check digit, as ORCID defines it."""
    if not ORCID.match(value):
        return False
    digits = value.replace("-", "")
    total = 0
    for char in digits[:-1]:
        total = (total + int(char)) * 2
    check = (12 - total % 11) % 11
    return digits[-1] == ("X" if check == 10 else str(check))


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Faults:
    """Switchable fault injection; every counter is consumed by the requests it applies to."""

    rate_limited: int = 0  # the next N requests answer 429
    retry_after: int = 1
    server_errors: int = 0  # the next N requests (matching ``error_path``) answer 500
    error_path: str = ""
    publish_then_timeout: float = 0.0  # publish, then wait this long before answering
    publish_then_504: int = 0  # publish, then answer 504 (N times)
    no_bucket_link: bool = False
    corrupt_uploads: int = 0
    delay: float = 0.0
    max_upload_bytes: int = 50 * 1024 * 1024


@dataclass
class StoredFile:
    id: str
    key: str
    data: bytes
    version_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: str = field(default_factory=now)

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest()


@dataclass
class Deposit:
    id: int
    conceptrecid: str
    owner: int
    metadata: dict[str, Any]
    bucket: str = field(default_factory=lambda: str(uuid.uuid4()))
    files: dict[str, StoredFile] = field(default_factory=dict)
    published: bool = False
    editing: bool = False
    version_index: int = 0
    created: str = field(default_factory=now)
    modified: str = field(default_factory=now)


@dataclass
class Seen:
    """One received request, for tests that check what clients send."""

    method: str
    target: str
    headers: dict[str, str]


class ValidationFailed(Exception):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors


class ZenodoFake:
    """In-memory Zenodo state plus the request handling; one per test server."""

    def __init__(
        self,
        *,
        sandbox: bool = False,
        tokens: dict[str, tuple[int, set[str]]] | None = None,
        auth_mode: str = "rdm",
        newversion_mode: str = "rdm",
        error_shape: str = "rdm",
    ) -> None:
        self.sandbox = sandbox
        self.tokens = (
            tokens if tokens is not None else {"secret-token-1": (1, {"deposit:write", "deposit:actions"})}
        )
        self.auth_mode = auth_mode
        self.newversion_mode = newversion_mode
        self.error_shape = error_shape
        self.faults = Faults()
        self.deposits: dict[int, Deposit] = {}
        self.seen: list[Seen] = []
        self.lock = threading.RLock()
        self._next_id = 100000

    @property
    def prefix(self) -> str:
        return SANDBOX_PREFIX if self.sandbox else PROD_PREFIX

    # -- inspection helpers for tests ------------------------------------------------------------

    def concepts(self) -> set[str]:
        with self.lock:
            return {d.conceptrecid for d in self.deposits.values()}

    def drafts(self) -> list[Deposit]:
        with self.lock:
            return [d for d in self.deposits.values() if not d.published]

    def published(self) -> list[Deposit]:
        with self.lock:
            return sorted((d for d in self.deposits.values() if d.published), key=lambda d: d.id)

    # -- ids and serialisation -------------------------------------------------------------------

    def _allocate(self) -> int:
        self._next_id += 1
        return self._next_id

    def _doi(self, recid: int | str) -> str:
        return f"{self.prefix}/zenodo.{recid}"

    def _file_json(self, base: str, dep: Deposit, f: StoredFile) -> dict[str, Any]:
        return {
            "id": f.id,
            "filename": f.key,
            "filesize": len(f.data),
            "checksum": f.md5,
            "links": {
                "self": f"{base}/deposit/depositions/{dep.id}/files/{f.id}",
                "download": f"{base}/records/{dep.id}/draft/files/{f.key}/content",
            },
        }

    def deposition_json(self, base: str, dep: Deposit) -> dict[str, Any]:
        dep_url = f"{base}/deposit/depositions/{dep.id}"
        html = base.removesuffix("/api")
        links = {
            "self": dep_url,
            "html": f"{html}/deposit/{dep.id}",
            "files": f"{dep_url}/files",
            "latest_draft": dep_url,
            "latest_draft_html": f"{html}/deposit/{dep.id}",
            "publish": f"{dep_url}/actions/publish",
            "edit": f"{dep_url}/actions/edit",
            "discard": f"{dep_url}/actions/discard",
            "newversion": f"{dep_url}/actions/newversion",
        }
        if (not dep.published or dep.editing) and not self.faults.no_bucket_link:
            links["bucket"] = f"{base}/files/{dep.bucket}"
        metadata = dict(dep.metadata)
        metadata["prereserve_doi"] = {"doi": f"{PROD_PREFIX}/zenodo.{dep.id}", "recid": dep.id}
        body: dict[str, Any] = {
            "created": dep.created,
            "modified": dep.modified,
            "id": dep.id,
            "record_id": dep.id,
            "conceptrecid": dep.conceptrecid,
            "owner": dep.owner,
            "title": metadata.get("title", ""),
            "state": ("inprogress" if dep.editing else "done") if dep.published else "unsubmitted",
            "submitted": dep.published,
            "files": [self._file_json(base, dep, f) for f in dep.files.values()],
            "metadata": metadata,
            "links": links,
        }
        if dep.published:
            body.update(
                doi=self._doi(dep.id),
                doi_url=f"https://doi.org/{self._doi(dep.id)}",
                conceptdoi=self._doi(dep.conceptrecid),
            )
            metadata["doi"] = self._doi(dep.id)
            links.update(
                self=f"{base}/records/{dep.id}",
                html=f"{html}/records/{dep.id}",
                doi=f"https://doi.org/{self._doi(dep.id)}",
                parent_doi=f"https://doi.org/{self._doi(dep.conceptrecid)}",
                record=f"{base}/records/{dep.id}",
                latest=f"{base}/records/{dep.id}/versions/latest",
            )
        return body

    def record_json(self, base: str, dep: Deposit) -> dict[str, Any]:
        latest = self._latest(dep.conceptrecid)
        return {
            "id": dep.id,
            "recid": str(dep.id),
            "conceptrecid": dep.conceptrecid,
            "doi": self._doi(dep.id),
            "conceptdoi": self._doi(dep.conceptrecid),
            "doi_url": f"https://doi.org/{self._doi(dep.id)}",
            "metadata": {
                **dep.metadata,
                "doi": self._doi(dep.id),
                "relations": {
                    "version": [
                        {
                            "index": dep.version_index,
                            "is_last": latest is dep,
                            "parent": {"pid_type": "recid", "pid_value": dep.conceptrecid},
                        }
                    ]
                },
            },
            "title": dep.metadata.get("title", ""),
            "files": [
                {
                    "id": f.id,
                    "key": f.key,
                    "size": len(f.data),
                    "checksum": f"md5:{f.md5}",
                    "links": {"self": f"{base}/records/{dep.id}/files/{f.key}/content"},
                }
                for f in dep.files.values()
            ],
            "links": {
                "self": f"{base}/records/{dep.id}",
                "latest": f"{base}/records/{dep.id}/versions/latest",
                "doi": f"https://doi.org/{self._doi(dep.id)}",
            },
            "status": "published",
            "state": "done",
            "submitted": True,
        }

    def _latest(self, conceptrecid: str) -> Deposit | None:
        versions = [d for d in self.deposits.values() if d.conceptrecid == conceptrecid and d.published]
        return max(versions, key=lambda d: d.version_index) if versions else None

    # -- validation ------------------------------------------------------------------------------

    def clean_metadata(self, metadata: Any) -> dict[str, Any]:
        """Type checks Zenodo does when a draft is saved; unknown metadata keys are dropped."""
        if not isinstance(metadata, dict):
            raise ValidationFailed([("metadata", "Not a valid mapping type.")])
        errors: list[tuple[str, str]] = []
        out = {k: v for k, v in metadata.items() if k in METADATA_KEYS}
        if "upload_type" in out and out["upload_type"] not in UPLOAD_TYPES:
            errors.append(("metadata.upload_type", "Invalid value."))
        if "access_right" in out and out["access_right"] not in ACCESS_RIGHTS:
            errors.append(("metadata.access_right", "Not a valid choice"))
        if "publication_date" in out:
            try:
                date.fromisoformat(str(out["publication_date"]))
            except ValueError:
                errors.append(("metadata.publication_date", "Not a valid date."))
        if "license" in out:
            license_ = out["license"]
            value = license_.get("id") if isinstance(license_, dict) else license_
            if not isinstance(value, str):
                errors.append(
                    (
                        "metadata.license",
                        "Invalid license value provided (expected string, "
                        f"or object with 'id' key): {license_}",
                    )
                )
            elif value.lower() not in LICENSES:
                errors.append(("metadata.license", f"Invalid license provided: {value}"))
            else:
                out["license"] = LEGACY_LICENSE_IDS.get(value.lower(), value.lower())
        if "creators" in out:
            creators = out["creators"]
            if not isinstance(creators, list) or not all(isinstance(c, dict) for c in creators):
                errors.append(("metadata.creators", "Creators must be a list of objects."))
            else:
                for i, creator in enumerate(creators):
                    orcid = creator.get("orcid")
                    if orcid is not None and not (isinstance(orcid, str) and orcid_valid(orcid)):
                        errors.append((f"metadata.creators.{i}.orcid", f"Invalid ORCID identifier: {orcid}"))
        if "related_identifiers" in out:
            errors += self._check_related(out)
        if "communities" in out:
            communities = out["communities"]
            if not isinstance(communities, list) or not all(
                isinstance(c, dict) and isinstance(c.get("identifier"), str) for c in communities
            ):
                errors.append(
                    ("communities", "Communities must be an array of objects with an 'identifier' key.")
                )
        if "keywords" in out and not (
            isinstance(out["keywords"], list) and all(isinstance(k, str) for k in out["keywords"])
        ):
            errors.append(("metadata.keywords", "Keywords must be a list of strings."))
        doi = out.get("doi")
        if isinstance(doi, str) and doi and not doi.startswith(self.prefix + "/") and self._is_own_doi(doi):
            errors.append(
                (
                    "metadata.doi",
                    f"Wrong DOI {doi.split('/')[0]} prefix provided, it should be "
                    f"{self.prefix} as defined in the rest client",
                )
            )
        if errors:
            raise ValidationFailed(errors)
        return out

    def _is_own_doi(self, doi: str) -> bool:
        return doi.split("/", 1)[-1].startswith("zenodo.")

    def _check_related(self, out: dict[str, Any]) -> list[tuple[str, str]]:
        related = out["related_identifiers"]
        if not isinstance(related, list):
            return [("metadata.related_identifiers", "related_identifiers must be a list")]
        errors: list[tuple[str, str]] = []
        for i, item in enumerate(related):
            where = f"metadata.related_identifiers.{i}"
            if not isinstance(item, dict):
                errors.append((where, "Each related identifier must be an object"))
                continue
            relation, identifier = item.get("relation"), item.get("identifier")
            if not isinstance(relation, str):
                errors.append((f"{where}.relation", "relation must be a string"))
            elif relation.lower() not in RELATION_BY_LOWER:
                errors.append((f"{where}.relation", f"Invalid relation type: {relation}"))
            else:
                item["relation"] = RELATION_BY_LOWER[relation.lower()]
            if not isinstance(identifier, str) or not any(p.match(identifier) for _, p in _SCHEMES):
                errors.append((f"{where}.identifier", f"Unable to detect scheme for {identifier!r}."))
        return errors

    def check_publishable(self, dep: Deposit) -> None:
        """What Zenodo requires at publish; all errors at once."""
        md = dep.metadata
        errors: list[tuple[str, str]] = []
        for key in ("upload_type", "title", "description"):
            if not md.get(key):
                errors.append((f"metadata.{key}", "Missing data for required field."))
        if md.get("upload_type") == "publication" and not md.get("publication_type"):
            errors.append(("metadata.publication_type", "Missing data for required field."))
        creators = md.get("creators") or []
        if not creators:
            errors.append(("metadata.creators", "Missing data for required field."))
        for i, creator in enumerate(creators):
            name = creator.get("name")
            if not isinstance(name, str) or not name.strip():
                errors.append((f"metadata.creators.{i}.name", "Name is required."))
            elif any(not part.strip() for part in name.split(",")) or name.count(",") > 1:
                errors.append((f"metadata.creators.{i}.name", "Name must be in the format 'Family, Given'."))
        if md.get("access_right", "open") in ("open", "embargoed") and not md.get("license"):
            errors.append(("metadata.license", "Missing data for required field."))
        if not dep.files:
            errors.append(
                (
                    "files.enabled",
                    "Missing uploaded files. To disable files for this record "
                    "please mark it as metadata-only.",
                )
            )
        if errors:
            raise ValidationFailed(errors)


class Reply(Exception):
    """An HTTP answer raised from inside a route."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def error(status: int, message: str) -> Reply:
    return Reply(status, {"status": status, "message": message})


class Handler(BaseHTTPRequestHandler):
    """Routes requests onto :class:`ZenodoFake` (``self.server.fake``)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out separately: avoid 40 ms delayed ACKs
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read ``fake.seen``
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def fake(self) -> ZenodoFake:
        return self.server.fake

    @property
    def base(self) -> str:
        return f"http://{self.headers.get('Host', '127.0.0.1')}/api"

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("X-RateLimit-Limit", str(RATE_LIMIT))
        self.send_header("X-RateLimit-Remaining", str(RATE_LIMIT - 1))
        self.send_header("X-RateLimit-Reset", str(int(time.time()) + 60))
        if body is not None and not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if raw:
            self.wfile.write(raw)

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = self._read_body()
        fake = self.fake
        with fake.lock:
            fake.seen.append(Seen(self.command, self.path, dict(self.headers.items())))
            faults = fake.faults
            injected = self._injected_fault(parts.path)
        if faults.delay:
            time.sleep(faults.delay)
        if injected is not None:
            self._send(injected.status, injected.body, injected.headers)
            return
        try:
            with fake.lock:
                status, payload, headers = self._route(parts.path, body)
        except Reply as reply:
            status, payload, headers = reply.status, reply.body, reply.headers
        except ValidationFailed as exc:
            status, payload, headers = 400, self._validation_body(exc.errors), {}
        if isinstance(payload, _Delayed):
            time.sleep(payload.seconds)
            payload = payload.body
        self._send(status, payload, headers)

    def _injected_fault(self, path: str) -> Reply | None:
        faults = self.fake.faults
        if faults.rate_limited > 0:
            faults.rate_limited -= 1
            return Reply(
                429, {"status": 429, "message": "100 per 1 minute"}, {"Retry-After": str(faults.retry_after)}
            )
        if faults.server_errors > 0 and faults.error_path in path:
            faults.server_errors -= 1
            return Reply(
                500,
                {
                    "status": 500,
                    "message": "The server encountered an internal error and was "
                    "unable to complete your request.",
                    "error_id": uuid.uuid4().hex,
                },
            )
        return None

    def _validation_body(self, errors: list[tuple[str, str]]) -> dict[str, Any]:
        if self.fake.error_shape == "legacy":
            return {
                "status": 400,
                "message": "Validation error",
                "errors": [{"field": f, "message": m} for f, m in errors],
            }
        return {
            "status": 400,
            "message": "A validation error occurred.",
            "errors": [{"field": f, "messages": [m]} for f, m in errors],
        }

    def _json_body(self, body: bytes) -> Any:
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            raise error(415, "Unsupported media type: send JSON with Content-Type: application/json")
        try:
            return json.loads(body or b"{}")
        except ValueError:
            raise error(
                400, "The browser (or proxy) sent a request that this server could not understand."
            ) from None

    def _user(self) -> tuple[int, set[str]]:
        header = self.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else self.query.get("access_token")
        if not token:
            raise error(401 if self.fake.auth_mode == "docs" else 403, NO_TOKEN)
        if token not in self.fake.tokens:
            raise error(403, "Permission denied.")
        return self.fake.tokens[token]

    def _own(self, dep_id: str, user: int) -> Deposit:
        dep = self.fake.deposits.get(int(dep_id))
        if dep is None:
            raise error(404, NOT_FOUND)
        if dep.owner != user:
            raise error(403, "Permission denied.")
        return dep

    # -- routes ----------------------------------------------------------------------------------

    def _route(self, path: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        method, fake = self.command, self.fake
        if m := re.fullmatch(r"/api/records/(\d+)(/versions/latest)?", path):
            dep = fake.deposits.get(int(m.group(1)))
            if method != "GET" or dep is None or not dep.published:
                raise error(404, NOT_FOUND)
            target = fake._latest(dep.conceptrecid) if m.group(2) else dep
            assert target is not None
            return 200, fake.record_json(self.base, target), {}
        if m := re.fullmatch(r"/api/records/(\d+)/files/([^/]+)/content", path):
            dep = fake.deposits.get(int(m.group(1)))
            stored = dep.files.get(unquote(m.group(2))) if dep is not None and dep.published else None
            if method != "GET" or stored is None:
                raise error(404, NOT_FOUND)
            return 200, stored.data, {"Content-Type": "application/octet-stream"}
        if path == "/api/records" and method == "GET":
            return 200, self._search_records(), {}
        if path.rstrip("/") == "/api/licenses" and method == "GET":
            return 200, {"hits": {"hits": [{"id": lic} for lic in sorted(LICENSES)]}}, {}
        user, scopes = self._user()
        if path == "/api/deposit/depositions":
            if method == "GET":
                return 200, self._list(user), {}
            if method == "POST":
                return 201, self._create(user, scopes, body), {}
        if m := re.fullmatch(r"/api/deposit/depositions/(\d+)", path):
            dep = self._own(m.group(1), user)
            return self._deposition(dep, scopes, body)
        if m := re.fullmatch(r"/api/deposit/depositions/(\d+)/files(?:/([^/]+))?", path):
            dep = self._own(m.group(1), user)
            return self._files(dep, m.group(2))
        if m := re.fullmatch(r"/api/deposit/depositions/(\d+)/actions/(\w+)", path):
            dep = self._own(m.group(1), user)
            if method != "POST":
                raise error(405, "Method not allowed.")
            if "deposit:actions" not in scopes:
                raise error(403, "Permission denied.")
            return self._action(dep, m.group(2))
        if m := re.fullmatch(r"/api/files/([0-9a-f-]+)(?:/(.+))?", path):
            return self._bucket(m.group(1), unquote(m.group(2)) if m.group(2) else None, user, body)
        raise error(404, "The requested URL was not found on the server.")

    def _list(self, user: int) -> list[dict[str, Any]]:
        fake, status = self.fake, self.query.get("status")
        concept = re.fullmatch(r"conceptrecid:(\d+)", self.query.get("q", ""))
        found = [
            d
            for d in fake.deposits.values()
            if d.owner == user
            and (status is None or (status == "draft") != d.published)
            and (concept is None or d.conceptrecid == concept.group(1))
        ]
        found.sort(key=lambda d: d.id, reverse=self.query.get("sort", "mostrecent") != "-mostrecent")
        return [fake.deposition_json(self.base, d) for d in found[: int(self.query.get("size", 10))]]

    def _search_records(self) -> dict[str, Any]:
        concept = re.fullmatch(r"conceptrecid:(\d+)", self.query.get("q", ""))
        hits = [d for d in self.fake.published() if concept is None or d.conceptrecid == concept.group(1)]
        if not self.query.get("all_versions"):
            hits = [d for d in hits if self.fake._latest(d.conceptrecid) is d]
        hits.sort(key=lambda d: d.version_index, reverse=True)
        return {"hits": {"hits": [self.fake.record_json(self.base, d) for d in hits], "total": len(hits)}}

    def _create(self, user: int, scopes: set[str], body: bytes) -> dict[str, Any]:
        if "deposit:write" not in scopes:
            raise error(403, "Permission denied.")
        data = self._json_body(body)
        if not isinstance(data, dict):
            raise ValidationFailed([("_schema", "Invalid input type.")])
        unknown = [k for k in data if k != "metadata"]
        if unknown:
            raise ValidationFailed([(k, "Unknown field.") for k in unknown])
        metadata = self.fake.clean_metadata(data.get("metadata", {}))
        metadata.setdefault("access_right", "open")
        concept = self.fake._allocate()
        dep = Deposit(id=self.fake._allocate(), conceptrecid=str(concept), owner=user, metadata=metadata)
        self.fake.deposits[dep.id] = dep
        return self.fake.deposition_json(self.base, dep)

    def _deposition(self, dep: Deposit, scopes: set[str], body: bytes) -> tuple[int, Any, dict[str, str]]:
        fake, method = self.fake, self.command
        if method == "GET":
            return 200, fake.deposition_json(self.base, dep), {}
        if method == "PUT":
            if dep.published and not dep.editing:
                raise error(404, NOT_FOUND)
            data = self._json_body(body)
            if not isinstance(data, dict):
                raise ValidationFailed([("_schema", "Invalid input type.")])
            unknown = [k for k in data if k != "metadata"]
            if unknown:
                raise ValidationFailed([(k, "Unknown field.") for k in unknown])
            # A full replacement: whatever is not re-sent is gone.
            dep.metadata = fake.clean_metadata(data.get("metadata", {}))
            dep.modified = now()
            return 200, fake.deposition_json(self.base, dep), {}
        if method == "DELETE":
            if dep.published:
                raise error(404, NOT_FOUND)
            del fake.deposits[dep.id]
            return 204, None, {}
        raise error(405, "Method not allowed.")

    def _files(self, dep: Deposit, file_id: str | None) -> tuple[int, Any, dict[str, str]]:
        method, fake = self.command, self.fake
        if file_id is None:
            if method == "GET":
                return 200, [fake._file_json(self.base, dep, f) for f in dep.files.values()], {}
            raise error(405, "Method not allowed.")  # sort (PUT) is not implemented on Zenodo-RDM
        stored = next((f for f in dep.files.values() if f.id == file_id), None)
        if stored is None:
            raise error(404, NOT_FOUND)
        if method == "GET":
            return 200, fake._file_json(self.base, dep, stored), {}
        if method == "DELETE":
            if dep.published:
                raise error(403, "Permission denied.")
            del dep.files[stored.key]
            return 204, None, {}
        raise error(405, "Method not allowed.")

    def _action(self, dep: Deposit, action: str) -> tuple[int, Any, dict[str, str]]:
        fake = self.fake
        if action == "publish":
            if dep.published and not dep.editing:
                raise error(404, NOT_FOUND)
            fake.check_publishable(dep)
            if not dep.published:
                latest = fake._latest(dep.conceptrecid)
                dep.version_index = (latest.version_index + 1) if latest else 1
            dep.published, dep.editing = True, False
            dep.metadata.setdefault("publication_date", date.today().isoformat())
            dep.modified = now()
            answer = fake.deposition_json(self.base, dep)
            if fake.faults.publish_then_504 > 0:
                fake.faults.publish_then_504 -= 1
                raise Reply(
                    504,
                    b"<html><body><h1>504 Gateway Time-out</h1></body></html>",
                    {"Content-Type": "text/html"},
                )
            if fake.faults.publish_then_timeout:
                return 202, _Delayed(fake.faults.publish_then_timeout, answer), {}
            return 202, answer, {}
        if action == "edit":
            if not dep.published:
                raise error(400, "Deposition is not published.")
            dep.editing = True
            return 201, fake.deposition_json(self.base, dep), {}
        if action == "discard":
            if dep.published:
                dep.editing = False
            else:
                del fake.deposits[dep.id]
            return 204, None, {}
        if action == "newversion":
            return 201, self._new_version(dep), {}
        raise error(404, "The requested URL was not found on the server.")

    def _new_version(self, dep: Deposit) -> dict[str, Any]:
        fake = self.fake
        if not dep.published:
            raise error(400, "A new version can only be created from a published record.")
        if fake._latest(dep.conceptrecid) is not dep:
            raise error(400, "A new version can only be created from the latest version.")
        if any(d.conceptrecid == dep.conceptrecid and not d.published for d in fake.deposits.values()):
            raise error(400, "There is already an unpublished new version draft for this record.")
        metadata = {k: v for k, v in dep.metadata.items() if k not in ("version", "doi")}
        metadata["publication_date"] = date.today().isoformat()
        draft = Deposit(fake._allocate(), dep.conceptrecid, dep.owner, metadata)
        draft.files = {k: StoredFile(id=str(uuid.uuid4()), key=k, data=f.data) for k, f in dep.files.items()}
        fake.deposits[draft.id] = draft
        if fake.newversion_mode == "docs":
            answer = fake.deposition_json(self.base, dep)
            answer["links"]["latest_draft"] = f"{self.base}/deposit/depositions/{draft.id}"
            return answer
        return fake.deposition_json(self.base, draft)

    def _bucket(
        self, bucket: str, key: str | None, user: int, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        fake, method = self.fake, self.command
        dep = next((d for d in fake.deposits.values() if d.bucket == bucket), None)
        if dep is None:
            raise error(404, "Bucket does not exist.")
        if dep.owner != user:
            raise error(403, "Permission denied.")
        if key is None:
            if method != "GET":
                raise error(405, "Method not allowed.")
            return 200, {"contents": [self._object_json(dep, f) for f in dep.files.values()]}, {}
        stored = dep.files.get(key)
        if method == "GET":
            if stored is None:
                raise error(404, "Object does not exist.")
            return 200, stored.data, {"Content-Type": "application/octet-stream"}
        if dep.published:
            raise error(403, "Permission denied.")
        if method == "DELETE":
            if stored is None:
                raise error(404, "Object does not exist.")
            del dep.files[key]
            return 204, None, {}
        if method != "PUT":
            raise error(405, "Method not allowed.")
        if len(body) > fake.faults.max_upload_bytes:
            raise error(413, "The data value transmitted exceeds the capacity limit.")
        if fake.faults.corrupt_uploads > 0:
            fake.faults.corrupt_uploads -= 1
            body = body[:-1] + bytes([(body[-1] + 1) % 256]) if body else b"x"
        dep.files.pop(key, None)  # same key again: the old object is deleted, then replaced
        dep.files[key] = StoredFile(id=str(uuid.uuid4()), key=key, data=body)
        return 201, self._object_json(dep, dep.files[key]), {}

    def _object_json(self, dep: Deposit, f: StoredFile) -> dict[str, Any]:
        url = f"{self.base}/files/{dep.bucket}/{f.key}"
        return {
            "key": f.key,
            "mimetype": "application/octet-stream",
            "checksum": f"md5:{f.md5}",
            "version_id": f.version_id,
            "size": len(f.data),
            "created": f.created,
            "updated": f.created,
            "links": {"self": url, "version": f"{url}?versionId={f.version_id}", "uploads": f"{url}?uploads"},
            "is_head": True,
            "delete_marker": False,
        }


@dataclass
class _Delayed:
    seconds: float
    body: Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: Any


class ZenodoServer:
    """The fake on a random loopback port; ``url`` is the API base (``http://127.0.0.1:PORT/api``)."""

    handler: type[Handler] = Handler

    def __init__(self, fake: Any = None) -> None:
        self.fake = fake or ZenodoFake()
        self._server = _Server(("127.0.0.1", 0), self.handler)
        self._server.fake = self.fake
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="zenodo-fake", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

    @property
    def token(self) -> str:
        return next(iter(self.fake.tokens))

    def start(self) -> ZenodoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ZenodoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
