"""rucio-rule: register a new file in Rucio where it lies in dCache, attach it to its run's dataset
and add the replication rule that archives it.

For the file of a storage event (or of the step record of the function named in ``AFTER``):

1. find the RSE whose protocol prefix holds the file's dCache path (among ``RUCIO_RSES``, an RSE
   expression) and register the file there as a replica at that path (``add_replicas`` with its
   PFN, size and adler32: from the event, else computed while reading the file);
2. create the run's dataset if needed and attach the file (``RUCIO_SCOPE``/``RUCIO_DATASET``, with
   ``{dir}`` = the file's folder name, ``{dir2}`` = the folder above it);
3. add the replication rule ``RUCIO_RULE_RSE_EXPRESSION`` x ``RUCIO_RULE_COPIES`` with
   ``RUCIO_RULE_LIFETIME`` (seconds, empty: none) and ``RUCIO_RULE_ACTIVITY``;
4. with ``RUCIO_BUFFER_LIFETIME`` (seconds), a rule on the buffer RSE with that lifetime: the buffer
   copy is kept that long, then Rucio may delete it, the archive rule keeping the file elsewhere.

Every step is idempotent (an existing replica, attachment or identical rule is reused), so a
redelivered event changes nothing. Writes ``<file>.rucio-rule.json`` (a step record). Settings come
from ``env``; the password is the ``RUCIO_PASSWORD`` secret, never written anywhere.
``{"dry_run": true, "path": …, "rse_prefix": …}`` shows what would be registered.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FUNCTION = "rucio-rule"
CLIENT_CONFIG = (
    "[client]\nrucio_host = {host}\nauth_host = {auth}\nauth_type = userpass\naccount = {account}\n"
)


class RuleError(RuntimeError):
    """Rucio refused a step, or the settings do not fit the file; says which and why."""


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise RuleError(f"{FUNCTION}: the setting {name} is missing (function.yaml env)")
        return default
    return value


def optional_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise RuleError(f"{FUNCTION}: {name}={raw!r} is not a whole number of seconds") from None


@dataclass(frozen=True)
class Plan:
    """What is registered for one file."""

    scope: str
    name: str
    dataset: str
    rse: str
    pfn: str
    rse_expression: str
    copies: int
    lifetime: int | None
    activity: str | None
    buffer_lifetime: int | None


def names_for(path: str) -> dict[str, str]:
    """The placeholders of ``RUCIO_SCOPE`` and ``RUCIO_DATASET`` for a file path."""
    folder = posixpath.dirname(path)
    return {
        "name": posixpath.basename(path),
        "dir": posixpath.basename(folder),
        "dir2": posixpath.basename(posixpath.dirname(folder)),
    }


def plan_for(path: str, rse: str, protocol: dict[str, Any]) -> Plan:
    """The registration of ``path`` on ``rse`` (whose ``protocol`` prefix holds it), from the settings."""
    names = names_for(path)
    try:
        scope = setting("RUCIO_SCOPE", "{dir2}").format(**names)
        dataset = setting("RUCIO_DATASET", "{dir2}.{dir}").format(**names)
    except KeyError as exc:
        raise RuleError(f"{FUNCTION}: unknown placeholder {exc} in RUCIO_SCOPE or RUCIO_DATASET") from None
    port = f":{protocol['port']}" if protocol.get("port") else ""
    pfn = f"{protocol['scheme']}://{protocol['hostname']}{port}{path}"
    return Plan(
        scope=scope,
        name=names["name"],
        dataset=dataset,
        rse=rse,
        pfn=pfn,
        rse_expression=setting("RUCIO_RULE_RSE_EXPRESSION"),
        copies=int(setting("RUCIO_RULE_COPIES", "1")),
        lifetime=optional_int("RUCIO_RULE_LIFETIME"),
        activity=os.environ.get("RUCIO_RULE_ACTIVITY") or None,
        buffer_lifetime=optional_int("RUCIO_BUFFER_LIFETIME"),
    )


def matching_rse(path: str, candidates: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """The RSE and protocol whose prefix is the longest one containing ``path``."""
    best: tuple[str, dict[str, Any]] | None = None
    for rse, protocol in candidates:
        prefix = "/" + str(protocol.get("prefix") or "").strip("/")
        longer = best is None or len(prefix) > len(str(best[1].get("prefix") or ""))
        if path.startswith(prefix.rstrip("/") + "/") and longer:
            best = (rse, {**protocol, "prefix": prefix})
    if best is None:
        known = ", ".join(f"{r} ({p.get('prefix')})" for r, p in candidates) or "none"
        raise RuleError(f"no Rucio RSE holds {path}: RSE prefixes are {known}")
    return best


def adler32_of(handle: Any) -> str:
    """adler32 as Rucio stores it: 8 lowercase hex digits."""
    value = 1
    while chunk := handle.read(1 << 20):
        value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


def client() -> Any:
    """A Rucio client for the settings; the password goes to the client only, never to a file."""
    host = setting("RUCIO_URL")
    config = Path(tempfile.gettempdir()) / f"faaspub-rucio-client-{os.getpid()}.cfg"
    config.write_text(
        CLIENT_CONFIG.format(
            host=host, auth=setting("RUCIO_AUTH_URL", host), account=setting("RUCIO_ACCOUNT")
        )
        + "request_retries = 3\n",
        encoding="utf-8",
    )
    os.environ["RUCIO_CONFIG"] = str(config)
    from rucio.client import Client

    return Client(
        account=setting("RUCIO_ACCOUNT"),
        auth_type="userpass",
        creds={"username": setting("RUCIO_USERNAME"), "password": setting("RUCIO_PASSWORD")},
    )


def candidates(rucio: Any) -> list[tuple[str, dict[str, Any]]]:
    """(RSE, protocol) for every protocol of the RSEs of ``RUCIO_RSES``."""
    found = []
    for rse in rucio.list_rses(setting("RUCIO_RSES", "*")):
        for protocol in rucio.get_protocols(rse["rse"]):
            found.append((rse["rse"], protocol))
    return found


def register(rucio: Any, plan: Plan, size: int, adler32: str) -> dict[str, Any]:
    """Replica, dataset, attachment and rules for ``plan`` (each reused when it exists)."""
    from rucio.common.exception import (
        DataIdentifierAlreadyExists,
        Duplicate,
        DuplicateRule,
        FileAlreadyExists,
    )

    did = {"scope": plan.scope, "name": plan.name}
    replica = {**did, "bytes": size, "adler32": adler32, "pfn": plan.pfn}
    rucio.add_replicas(plan.rse, [replica])
    with contextlib.suppress(DataIdentifierAlreadyExists):
        rucio.add_dataset(plan.scope, plan.dataset)
    with contextlib.suppress(FileAlreadyExists, Duplicate):
        rucio.attach_dids(plan.scope, plan.dataset, [did])
    rules = {}
    wanted = [("archive", plan.rse_expression, plan.copies, plan.lifetime)]
    if plan.buffer_lifetime is not None:
        wanted.append(("buffer", plan.rse, 1, plan.buffer_lifetime))
    for kind, expression, copies, lifetime in wanted:
        try:
            [rule_id] = rucio.add_replication_rule(
                [did], copies=copies, rse_expression=expression, lifetime=lifetime, activity=plan.activity
            )
        except DuplicateRule:
            rule_id = next(
                r["id"]
                for r in rucio.list_did_rules(plan.scope, plan.name)
                if r["rse_expression"] == expression and r["account"] == setting("RUCIO_ACCOUNT")
            )
        rules[kind] = rule_id
    return rules


def _from_event(params: dict[str, Any]) -> dict[str, Any]:
    from faaspub_runtime.events import open_input  # in every faaspub runtime image
    from faaspub_runtime.steps import resolve, write_record

    step = resolve(params, after=os.environ.get("AFTER") or None)
    data = step.data
    if data.checksum and data.checksum.startswith("adler32:") and data.size is not None:
        size, adler32 = data.size, data.checksum.removeprefix("adler32:")
    else:
        with open_input(data) as handle:
            adler32 = adler32_of(handle)
        size = data.size if data.size is not None else 0
    try:
        rucio = client()
        rse, protocol = matching_rse(data.path, candidates(rucio))
        plan = plan_for(data.path, rse, protocol)
        rules = register(rucio, plan, size, adler32)
    except RuleError:
        raise
    except Exception as exc:  # the client's typed errors; their messages never hold the password
        raise RuleError(f"Rucio refused {data.path}: {type(exc).__name__}: {exc}") from None
    result = {**asdict(plan), "bytes": size, "adler32": adler32, "rules": rules}
    return {**result, "record": write_record(step, FUNCTION, result)}


def main(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("dry_run"):
        path, prefix = str(params["path"]), str(params.get("rse_prefix", "/"))
        protocol = {"scheme": "davs", "hostname": "dcache.example.org", "port": 2880, "prefix": prefix}
        rse, found = matching_rse(path, [(str(params.get("rse", "BUFFER")), protocol)])
        return asdict(plan_for(path, rse, found))
    if params.get("specversion") == "1.0" or "event" in params:
        return _from_event(params)
    raise ValueError("expected a storage event or {'dry_run': true, 'path': ..., 'rse_prefix': ...}")
