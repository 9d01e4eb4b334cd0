"""scicat-ingest: create or update the SciCat dataset of a file that landed, with its scientific
metadata and the exact software that produced it.

For the file of a storage event (or of the step record of ``AFTER``, by default nexus-metadata,
whose ``scientificMetadata`` block it takes):

* the dataset's pid is derived from the file's path (``SCICAT_PID_PREFIX``/UUIDv5 of the path), so a
  redelivered event finds the dataset it created and updates it instead of making a second one;
* a new dataset is ``raw`` or ``derived`` (``SCICAT_DATASET_TYPE``); a derived one lists its input
  datasets: the pids of the paths its name came from (``SCICAT_INPUT_SUFFIX`` removed);
* ``usedSoftware`` names this function's version by DOI and image digest, and the step before it,
  as the platform exports them (``faaspub_runtime.identity``);
* the file itself is recorded as an original datablock (path, size, time, checksum).

Uses scitacean, SciCat's own Python client (v4 API). Settings in ``env``: ``SCICAT_URL``,
``SCICAT_OWNER``, ``SCICAT_OWNER_GROUP``, ``SCICAT_CONTACT_EMAIL``, ``SCICAT_CREATION_LOCATION``,
``SCICAT_DATASET_TYPE``, ``SCICAT_PID_PREFIX``, ``SCICAT_INPUT_SUFFIX``, ``AFTER``. Secret:
``SCICAT_TOKEN``. Writes ``<file>.scicat-ingest.json`` (a step record).
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, urlsplit

from scitacean import PID, ScicatCommError, model
from scitacean.client import ScicatClient

FUNCTION = "scicat-ingest"
TYPES = ("raw", "derived")


class IngestError(RuntimeError):
    """SciCat refused the dataset, or a setting is missing; says which and why."""


class NewDataset(model.UploadDataset):
    """SciCat's v4 create body with the pid chosen by the client (allowed by CreateDatasetDto)."""

    pid: str


class DatasetChanges(model.BaseModel):
    """The fields an update sets (PartialUpdateDatasetDto)."""

    scientificMetadata: dict[str, Any] | None = None
    usedSoftware: list[str] | None = None
    inputDatasets: list[str] | None = None
    keywords: list[str] | None = None


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name) or default
    if value is None:
        raise IngestError(f"{FUNCTION}: the setting {name} is missing (function.yaml env)")
    return value


def pid_for(path: str) -> str:
    """The dataset pid of a file: stable for the same path, so repeated events update one dataset."""
    return (
        f"{setting('SCICAT_PID_PREFIX', '20.500.12269')}/{uuid.uuid5(uuid.NAMESPACE_URL, 'faaspub:' + path)}"
    )


def inputs_for(path: str) -> list[str]:
    """Input datasets of a derived file ``<input><SCICAT_INPUT_SUFFIX>`` (none without a suffix)."""
    suffix = os.environ.get("SCICAT_INPUT_SUFFIX") or ""
    return [pid_for(path.removesuffix(suffix))] if suffix and path.endswith(suffix) else []


def software(previous: dict[str, Any] | None) -> list[str]:
    """This function's version (DOI, image by digest), then the step's it follows."""
    from faaspub_runtime.identity import current

    found = current().software()
    if previous:
        found += [f"https://doi.org/{previous['doi']}"] if previous.get("doi") else []
        if previous.get("image"):
            found.append(str(previous["image"]))
    return list(dict.fromkeys(found))


def dataset_for(path: str, created: datetime, metadata: dict[str, Any], used: list[str]) -> NewDataset:
    kind = setting("SCICAT_DATASET_TYPE", "raw")
    if kind not in TYPES:
        raise IngestError(f"SCICAT_DATASET_TYPE={kind!r} is not one of {', '.join(TYPES)}")
    inputs = inputs_for(path)
    if kind == "derived" and not inputs:
        raise IngestError(f"{path} is a derived dataset without input: set SCICAT_INPUT_SUFFIX to match it")
    try:
        return _new_dataset(path, kind, created, metadata, used, inputs)
    except ValueError as exc:  # scitacean's own checks (pydantic), before anything is sent
        raise IngestError(f"the dataset of {path} is not valid for SciCat: {exc}") from None


def _new_dataset(
    path: str, kind: str, created: datetime, metadata: dict[str, Any], used: list[str], inputs: list[str]
) -> NewDataset:
    return NewDataset(
        pid=pid_for(path),
        type=kind,
        datasetName=posixpath.basename(path),
        owner=setting("SCICAT_OWNER"),
        ownerGroup=setting("SCICAT_OWNER_GROUP"),
        contactEmail=setting("SCICAT_CONTACT_EMAIL"),
        creationLocation=os.environ.get("SCICAT_CREATION_LOCATION") or None,
        sourceFolder=posixpath.dirname(path) or "/",
        creationTime=created,
        scientificMetadata=metadata or None,
        usedSoftware=used or None,
        inputDatasets=inputs or None,
        keywords=["faaspub"],
    )


def client() -> ScicatClient:
    url = setting("SCICAT_URL")
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    # Plain http only to this machine (tests, a local SciCat): the token never crosses a network unencrypted.
    return ScicatClient.from_token(url=url, token=setting("SCICAT_TOKEN"), allow_http=loopback)


def _call(scicat: ScicatClient, what: str, **kwargs: Any) -> Any:
    try:
        return scicat.call_endpoint(version="v4", operation=what, **kwargs)
    except ScicatCommError as exc:
        raise IngestError(f"SciCat refused to {what.replace('_', ' ')}: {exc}") from None


def exists(scicat: ScicatClient, pid: str) -> bool:
    try:
        scicat.call_endpoint(cmd="get", url=f"datasets/{quote_plus(pid)}", version="v4", operation="get")
    except ScicatCommError as exc:
        if ": 404 " in str(exc):
            return False
        raise IngestError(f"SciCat refused to look up dataset {pid}: {exc}") from None
    return True


def ingest(
    path: str,
    size: int | None,
    checksum: str | None,
    created: datetime,
    metadata: dict[str, Any],
    used: list[str],
) -> dict[str, Any]:
    """Create the dataset (and its datablock), or update the one this path already has."""
    scicat = client()
    dataset = dataset_for(path, created, metadata, used)
    if exists(scicat, dataset.pid):
        changes = DatasetChanges(
            scientificMetadata=dataset.scientificMetadata,
            usedSoftware=dataset.usedSoftware,
            inputDatasets=dataset.inputDatasets,
            keywords=dataset.keywords,
        )
        _call(scicat, "update_dataset", cmd="patch", url=f"datasets/{quote_plus(dataset.pid)}", data=changes)
        return {"pid": dataset.pid, "created": False, "type": dataset.type}
    _call(scicat, "create_dataset", cmd="post", url="datasets", data=dataset)
    if size is not None:
        algorithm, _, value = (checksum or "").partition(":")
        block = model.UploadOrigDatablock(
            datasetId=PID.parse(dataset.pid),
            size=size,
            chkAlg=algorithm or None,
            dataFileList=[
                model.UploadDataFile(
                    path=posixpath.basename(path), size=size, time=created, chk=value or None
                )
            ],
        )
        _call(scicat, "create_origdatablock", cmd="post", url="origdatablocks", data=block)
    return {"pid": dataset.pid, "created": True, "type": dataset.type}


def _from_event(params: dict[str, Any]) -> dict[str, Any]:
    from faaspub_runtime.steps import resolve, write_record  # in every faaspub runtime image

    step = resolve(params, after=os.environ.get("AFTER") or None)
    previous = step.previous or {}
    metadata = dict((previous.get("result") or {}).get("scientificMetadata") or {})
    data = step.data
    result = ingest(data.path, data.size, data.checksum, data.time, metadata, software(step.previous))
    return {**result, "record": write_record(step, FUNCTION, result)}


def main(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("dry_run"):
        path = str(params["path"])
        created = datetime.fromisoformat(str(params.get("time") or datetime.now(UTC).isoformat()))
        dataset = dataset_for(path, created, dict(params.get("metadata") or {}), software(None))
        return dataset.model_dump(mode="json", exclude_none=True)
    if params.get("specversion") == "1.0" or "event" in params:
        return _from_event(params)
    raise ValueError("expected a storage event or {'dry_run': true, 'path': ...}")
