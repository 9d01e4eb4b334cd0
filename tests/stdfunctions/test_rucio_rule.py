"""functions/rucio-rule against the real Rucio server: the replica at the file's dCache path, the run's
dataset, the archive rule and the buffer rule, all read back through Rucio's own API."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra.rucio import DCACHE_HOST, DCACHE_PORT, RucioServer
from tests.stdfunctions.conftest import RAW, Dcache
from tests.stdfunctions.functions import load

rucio_rule = load("rucio-rule")
SCOPE = "p002042"


@pytest.fixture
def rucio(rucio_server: RucioServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The function's settings for the test server; the scope of the proposal exists."""
    client = rucio_server.client()
    if SCOPE not in client.list_scopes():
        client.add_scope(rucio_server.account, SCOPE)
    for key, value in {
        "RUCIO_URL": rucio_server.url,
        "RUCIO_ACCOUNT": rucio_server.account,
        "RUCIO_USERNAME": rucio_server.username,
        "RUCIO_PASSWORD": rucio_server.password,
        "RUCIO_RSES": "type=dcache",
        "RUCIO_SCOPE": "{dir2}",
        "RUCIO_DATASET": "{dir2}.{dir}",
        "RUCIO_RULE_RSE_EXPRESSION": "tier=tape",
        "RUCIO_RULE_COPIES": "1",
        "RUCIO_RULE_LIFETIME": "",
        "RUCIO_RULE_ACTIVITY": "User Subscriptions",
        "RUCIO_BUFFER_LIFETIME": "3600",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AFTER", raising=False)
    yield client


def test_a_new_file_is_registered_attached_and_ruled(dcache: Dcache, rucio: Any) -> None:
    content = b"frame" * 1000
    event = dcache.land("run42.nxs", content)
    result = rucio_rule.main(event)

    replicas = list(rucio.list_replicas([{"scope": SCOPE, "name": "run42.nxs"}], all_states=True))
    assert len(replicas) == 1
    [replica] = replicas
    assert replica["bytes"] == len(content)
    assert replica["adler32"] == f"{zlib.adler32(content) & 0xFFFFFFFF:08x}"
    pfn = f"davs://{DCACHE_HOST}:{DCACHE_PORT}{RAW}/run42.nxs"
    assert replica["rses"]["FACILITY_BUFFER"] == [pfn]

    content_of_run = [d["name"] for d in rucio.list_content(SCOPE, f"{SCOPE}.r0042")]
    assert content_of_run == ["run42.nxs"]

    rules = {r["rse_expression"]: r for r in rucio.list_did_rules(SCOPE, "run42.nxs")}
    assert set(rules) == {"tier=tape", "FACILITY_BUFFER"}
    archive, buffer = rules["tier=tape"], rules["FACILITY_BUFFER"]
    assert archive["copies"] == 1 and archive["expires_at"] is None
    assert archive["activity"] == "User Subscriptions" and archive["id"] == result["rules"]["archive"]
    assert buffer["expires_at"] is not None and buffer["id"] == result["rules"]["buffer"]

    record = json.loads(dcache.door.read(f"{RAW}/run42.nxs.rucio-rule.json") or b"{}")
    assert record["status"] == "success" and record["result"]["rules"] == result["rules"]


def test_a_redelivered_event_changes_nothing(dcache: Dcache, rucio: Any) -> None:
    event = dcache.land("run43.nxs", b"again")
    first = rucio_rule.main(event)
    dcache.door.local(f"{RAW}/run43.nxs.rucio-rule.json").unlink()  # dCache files are write-once
    second = rucio_rule.main(event)
    assert second["rules"] == first["rules"]
    assert len(list(rucio.list_did_rules(SCOPE, "run43.nxs"))) == 2


def test_after_scicat_ingest_it_registers_the_file_the_record_names(
    dcache: Dcache, rucio: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFTER", "scicat-ingest")
    monkeypatch.setenv("RUCIO_BUFFER_LIFETIME", "")
    data = dcache.land("run44.nxs", b"data44")
    record = {"status": "success", "function": "scicat-ingest", "input": data["data"]}
    result = rucio_rule.main(dcache.land("run44.nxs.scicat-ingest.json", json.dumps(record).encode()))
    assert result["name"] == "run44.nxs" and set(result["rules"]) == {"archive"}
    assert [r["rse_expression"] for r in rucio.list_did_rules(SCOPE, "run44.nxs")] == ["tier=tape"]


def test_a_file_outside_every_rse_is_refused_by_name(dcache: Dcache, rucio: Any) -> None:
    dcache.fake.mkdir("/pnfs/elsewhere/p1/r1")
    event = dcache.land("x.nxs", b"x", folder="/pnfs/elsewhere/p1/r1")
    with pytest.raises(rucio_rule.RuleError, match=r"no Rucio RSE holds /pnfs/elsewhere/p1/r1/x\.nxs"):
        rucio_rule.main(event)


def test_what_rucio_refuses_is_named_without_the_password(
    dcache: Dcache, rucio: Any, rucio_server: RucioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUCIO_RULE_RSE_EXPRESSION", "tier=nowhere")
    with pytest.raises(rucio_rule.RuleError, match=r"InvalidRSEExpression|RSE expression"):
        rucio_rule.main(dcache.land("run45.nxs", b"45"))
    monkeypatch.setenv("RUCIO_RULE_RSE_EXPRESSION", "tier=tape")
    monkeypatch.setenv("RUCIO_SCOPE", "unknownscope")
    with pytest.raises(rucio_rule.RuleError, match=r"ScopeNotFound|scope") as err:
        rucio_rule.main(dcache.land("run46.nxs", b"46"))
    assert rucio_server.password not in str(err.value)
