"""A SciCat backend stand-in for tests: datasets (v4) and original datablocks, validated as SciCat does.

Faithful to SciCatProject/scicat-backend-next at 4055c962 (2026-02-14): request bodies are checked
against the class-validator rules of ``CreateDatasetDto`` / ``PartialUpdateDatasetDto``
(``src/datasets/dto/create-dataset.dto.ts``, ``update-dataset.dto.ts``, ``OwnableDto``) and
``CreateOrigDatablockDto``, under the global ``ValidationPipe`` of ``src/main.ts`` (``whitelist``,
``forbidNonWhitelisted``): a missing required field, a wrong type or an unknown property gets
400 ``{"message": [...], "error": "Bad Request", "statusCode": 400}`` with class-validator's messages.

Routes (``/api/v4``): ``POST /datasets`` (201; 409 for a taken pid), ``POST /datasets/isValid``
(``{"valid": …}``, no whitelist check, as the controller validates a plain object), ``GET`` and
``PATCH /datasets/{pid}`` (404 unknown), ``POST /origdatablocks``. Without a valid bearer token:
403 ``Forbidden resource``, as SciCat's policies guard answers anonymous writes; a user may only create
datasets for an ``ownerGroup`` it belongs to. Created datasets get the system fields SciCat adds
(``pid`` with the configured prefix when none is given, ``createdBy``, ``createdAt``, ``updatedAt``,
``version``).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Check = Callable[[str, Any], list[str]]
EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
)
HOST = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?::\d{1,5})?(?:/.*)?$")


def _string(name: str, value: Any) -> list[str]:
    return [] if isinstance(value, str) else [f"{name} must be a string"]


def _not_empty_string(name: str, value: Any) -> list[str]:
    return _string(name, value) + ([f"{name} should not be empty"] if value in ("", None) else [])


def _strings(name: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        return [f"each value in {name} must be a string"]
    return [] if all(isinstance(v, str) for v in value) else [f"each value in {name} must be a string"]


def _int(name: str, value: Any) -> list[str]:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return [] if ok else [f"{name} must be an integer number"]


def _number(name: str, value: Any) -> list[str]:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return [] if ok else [f"{name} must be a number conforming to the specified constraints"]


def _bool(name: str, value: Any) -> list[str]:
    return [] if isinstance(value, bool) else [f"{name} must be a boolean value"]


def _object(name: str, value: Any) -> list[str]:
    return [] if isinstance(value, dict) else [f"{name} must be an object"]


def _date(name: str, value: Any) -> list[str]:
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        ok = isinstance(value, str)
    except ValueError:
        ok = False
    return [] if ok else [f"{name} must be a valid ISO 8601 date string"]


def _email(name: str, value: Any) -> list[str]:
    return [] if isinstance(value, str) and EMAIL.match(value) else [f"{name} must be an email"]


def _email_list(name: str, value: Any) -> list[str]:
    # CustomEmailList (src/datasets/utils/email-list-validator.util.ts): emails separated by ';'.
    ok = isinstance(value, str) and value and all(EMAIL.match(e.strip()) for e in value.split(";"))
    return [] if ok else [f"Expected an email or a list of semicolon separated emails, got {value}"]


def _url(name: str, value: Any) -> list[str]:
    return [] if isinstance(value, str) and HOST.match(value) else [f"{name} must be a URL address"]


def _any(_name: str, _value: Any) -> list[str]:  # decorated with @IsOptional() only: allowed, unchecked
    return []


def _nested(fields: dict[str, Check]) -> Check:
    """``@IsArray() @ValidateNested({each: true})`` of a DTO whose fields are all required strings."""

    def check(name: str, value: Any) -> list[str]:
        if not isinstance(value, list):
            return [f"{name} must be an array"]
        problems = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                problems.append(f"nested property {name} must be either object or array")
                continue
            for key in sorted(set(item) - set(fields)):
                problems.append(f"{name}.{i}.property {key} should not exist")
            for key, rule in fields.items():
                problems += rule(f"{name}.{i}.{key}", item.get(key))
        return problems

    return check


DATA_FILE: dict[str, Check] = {"path": _string, "size": _int, "time": _date}


def _file_list(name: str, value: Any) -> list[str]:
    """``@IsArray() @ArrayNotEmpty() @ValidateNested`` of DataFileDto (path, size, time required)."""
    if not isinstance(value, list):
        return [f"{name} must be an array"]
    if not value:
        return [f"{name} should not be empty"]
    problems = []
    optional = {"chk", "uid", "gid", "perm"}
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            problems.append(f"nested property {name} must be either object or array")
            continue
        for key in sorted(set(item) - set(DATA_FILE) - optional):
            problems.append(f"{name}.{i}.property {key} should not exist")
        for key, rule in DATA_FILE.items():
            problems += rule(f"{name}.{i}.{key}", item.get(key))
    return problems


# OwnableDto + UpdateDatasetDto (field: (rule, required)); CreateDatasetDto adds pid and type.
OWNABLE: dict[str, tuple[Check, bool]] = {
    "ownerGroup": (_string, True),
    "accessGroups": (_strings, False),
    "instrumentGroup": (_string, False),
}
UPDATE_DATASET: dict[str, tuple[Check, bool]] = {
    **OWNABLE,
    "owner": (_string, False),
    "ownerEmail": (_email, False),
    "orcidOfOwner": (_string, False),
    "contactEmail": (_email_list, True),
    "sourceFolder": (_not_empty_string, True),
    "sourceFolderHost": (_url, False),
    "size": (_int, False),
    "packedSize": (_int, False),
    "numberOfFiles": (_int, False),
    "numberOfFilesArchived": (_int, False),
    "creationTime": (_date, True),
    "validationStatus": (_string, False),
    "keywords": (_strings, False),
    "description": (_string, False),
    "datasetName": (_string, True),
    "classification": (_string, False),
    "license": (_string, False),
    "isPublished": (_bool, False),
    "techniques": (_nested({"pid": _string, "name": _string}), False),
    "sharedWith": (_strings, False),
    "relationships": (_nested({"pid": _string, "relationship": _string}), False),
    "datasetlifecycle": (_any, False),
    "scientificMetadata": (_object, False),
    "scientificMetadataSchema": (_string, False),
    "scientificMetadataValid": (_bool, False),
    "comment": (_string, False),
    "dataQualityMetrics": (_number, False),
    "principalInvestigators": (_strings, False),
    "startTime": (_date, False),
    "endTime": (_date, False),
    "creationLocation": (_string, False),
    "dataFormat": (_string, False),
    "proposalIds": (_strings, False),
    "sampleIds": (_strings, False),
    "instrumentIds": (_strings, False),
    "inputDatasets": (_strings, False),
    "usedSoftware": (_strings, False),
    "jobParameters": (_object, False),
    "jobLogData": (_string, False),
    "runNumber": (_string, False),
}
CREATE_DATASET = {**UPDATE_DATASET, "pid": (_string, False), "type": (_string, True)}
PARTIAL_UPDATE_DATASET = {name: (rule, False) for name, (rule, _) in UPDATE_DATASET.items()}
CREATE_ORIG_DATABLOCK: dict[str, tuple[Check, bool]] = {
    **OWNABLE,
    "ownerGroup": (_not_empty_string, False),
    "size": (_int, True),
    "chkAlg": (_not_empty_string, False),
    "dataFileList": (_file_list, True),
    "isPublished": (_bool, False),
    "datasetId": (_string, True),
}


def validate(body: Any, rules: dict[str, tuple[Check, bool]], whitelist: bool = True) -> list[str]:
    """class-validator's messages for ``body`` (an empty list when SciCat would accept it)."""
    if not isinstance(body, dict):
        return ["an instance of the DTO should be an object"]
    problems = [f"property {key} should not exist" for key in body if key not in rules] if whitelist else []
    for name, (rule, required) in rules.items():
        if name in body and body[name] is not None:
            problems += rule(name, body[name])
        elif required:
            problems += rule(name, None)
    return problems


@dataclass
class User:
    username: str
    groups: list[str]


@dataclass
class FakeScicat:
    """State of the fake; the HTTP handler below serves it."""

    tokens: dict[str, User]
    pid_prefix: str = "20.500.12269"
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    origdatablocks: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # method, path, body
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _nest(status: int, message: Any, error: str) -> dict[str, Any]:
    return {"message": message, "error": error, "statusCode": status}


class Handler(BaseHTTPRequestHandler):
    """HTTP front of :class:`FakeScicat`."""

    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeScicat:
        return self.server.fake

    def _reply(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _user(self) -> User | None:
        header = self.headers.get("Authorization") or ""
        return self.fake.tokens.get(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._reply(400, _nest(400, "Unexpected token in JSON", "Bad Request"))
            return
        with self.fake.lock:
            self.fake.requests.append((method, path, body))
        user = self._user()
        if user is None:
            self._reply(403, _nest(403, "Forbidden resource", "Forbidden"))
            return
        segments = [unquote(s) for s in path.split("/") if s]
        if segments[:3] == ["api", "v4", "datasets"]:
            self._datasets(method, "/".join(segments[3:]), body, user, query)
        elif segments == ["api", "v4", "origdatablocks"] and method == "POST":
            self._origdatablock(body, user)
        else:
            self._reply(404, _nest(404, f"Cannot {method} {path}", "Not Found"))

    do_GET = lambda self: self._dispatch("GET")  # noqa: E731
    do_POST = lambda self: self._dispatch("POST")  # noqa: E731
    do_PATCH = lambda self: self._dispatch("PATCH")  # noqa: E731

    def _datasets(self, method: str, rest: str, body: Any, user: User, query: dict[str, list[str]]) -> None:
        fake = self.fake
        if method == "POST" and rest == "isValid":
            self._reply(200, {"valid": not validate(body, CREATE_DATASET, whitelist=False)})
            return
        if method == "POST" and rest == "":
            problems = validate(body, CREATE_DATASET)
            if problems:
                self._reply(400, _nest(400, problems, "Bad Request"))
                return
            if body["ownerGroup"] not in user.groups:
                self._reply(403, _nest(403, "Unauthorized access", "Forbidden"))
                return
            pid = body.get("pid") or f"{fake.pid_prefix}/{uuid.uuid4()}"
            stamp = _now()
            dataset = {
                "size": 0,
                "packedSize": 0,
                "numberOfFiles": 0,
                "numberOfFilesArchived": 0,
                **body,
                "pid": pid,
                "createdBy": user.username,
                "updatedBy": user.username,
                "createdAt": stamp,
                "updatedAt": stamp,
                "version": "v4",
            }
            with fake.lock:
                if pid in fake.datasets:
                    self._reply(409, _nest(409, f"A dataset with pid {pid} already exists!", "Conflict"))
                    return
                fake.datasets[pid] = dataset
            self._reply(201, dataset)
            return
        with fake.lock:
            found = fake.datasets.get(rest)
        if found is None or method not in ("GET", "PATCH"):
            self._reply(404, _nest(404, f"dataset: {rest} not found", "Not Found"))
            return
        if method == "GET":
            include = query.get("include", [])
            shown = dict(found)
            if "origdatablocks" in include:
                shown["origdatablocks"] = [b for b in fake.origdatablocks if b["datasetId"] == rest]
            self._reply(200, shown)
            return
        problems = validate(body, PARTIAL_UPDATE_DATASET)
        if problems:
            self._reply(400, _nest(400, problems, "Bad Request"))
            return
        if found["ownerGroup"] not in user.groups:
            self._reply(403, _nest(403, "Unauthorized access", "Forbidden"))
            return
        with fake.lock:
            found.update({k: v for k, v in body.items() if v is not None})
            found.update(updatedAt=_now(), updatedBy=user.username)
            self._reply(200, dict(found))

    def _origdatablock(self, body: Any, user: User) -> None:
        fake = self.fake
        problems = validate(body, CREATE_ORIG_DATABLOCK)
        if problems:
            self._reply(400, _nest(400, problems, "Bad Request"))
            return
        with fake.lock:
            dataset = fake.datasets.get(body["datasetId"])
            if dataset is None:
                self._reply(404, _nest(404, f"dataset: {body['datasetId']} not found", "Not Found"))
                return
            block = {
                "_id": str(uuid.uuid4()),
                "ownerGroup": dataset["ownerGroup"],
                **body,
                "createdAt": _now(),
                "createdBy": user.username,
            }
            fake.origdatablocks.append(block)
            dataset["numberOfFiles"] = dataset.get("numberOfFiles", 0) + len(body["dataFileList"])
            dataset["size"] = dataset.get("size", 0) + body["size"]
        self._reply(201, block)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeScicat


def start(tokens: dict[str, User]) -> tuple[Server, FakeScicat]:
    """Serve a fresh fake on a random loopback port (in a daemon thread)."""
    fake = FakeScicat(tokens)
    server = Server(("127.0.0.1", 0), Handler)
    server.fake = fake
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, name="fake-scicat", daemon=True).start()
    return server, fake


def stop(server: Server) -> None:
    server.shutdown()
    server.server_close()
