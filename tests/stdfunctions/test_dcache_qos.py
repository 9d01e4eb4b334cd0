"""functions/dcache-qos against the dCache test server: single transitions, after another function,
bulk requests, and what dCache refuses."""

from __future__ import annotations

import json

import pytest

from tests.stdfunctions.conftest import RAW, Dcache
from tests.stdfunctions.functions import load, storage_event

qos = load("dcache-qos")


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QOS_TARGET", "tape")
    monkeypatch.setenv("QOS_WAIT_S", "10")
    monkeypatch.setenv("QOS_POLL_S", "0.05")
    monkeypatch.delenv("AFTER", raising=False)


def test_a_landed_file_goes_to_tape_and_the_record_says_when(dcache: Dcache) -> None:
    event = dcache.land("run1.nxs", b"x" * 100)
    result = qos.main(event)
    assert result["reached"] is True and result["before"] == "disk" and result["currentQos"] == "tape"
    assert 0 < result["waited_s"] < 10
    assert dcache.fake.qos_requests == [(f"{RAW}/run1.nxs", "tape")]
    record = json.loads(dcache.door.read(f"{RAW}/run1.nxs.dcache-qos.json") or b"{}")
    assert record["status"] == "success" and record["result"]["reached"] is True
    assert record["input"]["path"] == f"{RAW}/run1.nxs"


def test_after_a_named_function_it_acts_on_the_file_that_function_succeeded_on(
    dcache: Dcache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFTER", "rucio-rule")
    monkeypatch.setenv("QOS_TARGET", "disk+tape")
    data = dcache.land("run2.nxs", b"y" * 10)
    record = {"status": "success", "function": "rucio-rule", "input": data["data"]}
    event = dcache.land("run2.nxs.rucio-rule.json", json.dumps(record).encode())
    result = qos.main(event)
    assert result["path"] == f"{RAW}/run2.nxs" and result["currentQos"] == "disk+tape"
    assert dcache.fake.qos_requests == [(f"{RAW}/run2.nxs", "disk+tape")]


def test_no_transition_after_a_failed_step(dcache: Dcache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFTER", "rucio-rule")
    data = dcache.land("run3.nxs", b"z")
    record = {"status": "failed", "input": data["data"]}
    with pytest.raises(ValueError, match="does not record a successful run of rucio-rule"):
        qos.main(dcache.land("run3.nxs.rucio-rule.json", json.dumps(record).encode()))
    assert dcache.fake.qos_requests == []


def test_a_file_already_at_the_target_is_left_alone(dcache: Dcache) -> None:
    event = dcache.land("run4.nxs", b"q")
    qos.main(event)
    again = qos.transition(qos.Dcache.from_env(), event["subject"], "tape")
    assert again["reached"] and again["before"] == "tape"
    assert len(dcache.fake.qos_requests) == 1


def test_a_slow_transition_is_reported_as_not_reached(
    dcache: Dcache, monkeypatch: pytest.MonkeyPatch
) -> None:
    dcache.fake.qos_delay = 60
    monkeypatch.setenv("QOS_WAIT_S", "0.2")
    result = qos.main(dcache.land("run5.nxs", b"s"))
    assert result["reached"] is False and result["currentQos"] == "disk" and result["targetQos"] == "tape"
    assert qos.main({"check": f"{RAW}/run5.nxs"}) == {
        "path": f"{RAW}/run5.nxs",
        "currentQos": "disk",
        "targetQos": "tape",
    }


def test_bulk_request_for_many_files(dcache: Dcache) -> None:
    for name in ("a.nxs", "b.nxs"):
        dcache.land(name, b"b")
    paths = [f"{RAW}/a.nxs", f"{RAW}/b.nxs", f"{RAW}/missing.nxs"]
    result = qos.main({"files": paths, "target": "tape"})
    assert result["status"] == "COMPLETED", result
    assert result["targets"] == {paths[0]: "COMPLETED", paths[1]: "COMPLETED", paths[2]: "FAILED"}
    assert "No such file" in result["failed"][paths[2]]
    assert result["request"].startswith(dcache.fake.url + "/api/v1/bulk-requests/")
    for path in paths[:2]:
        assert qos.main({"check": path})["currentQos"] == "tape"


def test_what_dcache_refuses_is_named(dcache: Dcache) -> None:
    api = qos.Dcache.from_env()
    with pytest.raises(qos.QosError, match="Transition for directories not supported"):
        api.request_transition(RAW, "tape")
    event = dcache.land("run6.nxs", b"t")
    qos.main(event)
    with pytest.raises(qos.QosError, match="HTTP 400 Unsupported QoS transition"):
        api.request_transition(event["subject"], "disk")
    with pytest.raises(qos.QosError, match="no such qos type: cold"):
        api.request_transition(event["subject"], "cold")
    with pytest.raises(qos.QosError, match="either targetQos or qosPolicy"):
        api.call("POST", f"{api.url}/api/v1/bulk-requests", json={"activity": "UPDATE_QOS", "target": ["/x"]})
    with pytest.raises(qos.QosError, match=r"unsupported arguments: \['colour'\]"):
        api.call(
            "POST", f"{api.url}/api/v1/bulk-requests", json={"activity": "PIN", "target": ["/x"], "colour": 1}
        )


def test_a_wrong_token_is_refused_and_never_shown(dcache: Dcache) -> None:
    api = qos.Dcache(dcache.fake.url, "not-the-token-77")
    with pytest.raises(qos.QosError) as err:
        api.qos(f"{RAW}")
    assert "HTTP 401 anonymous access not allowed" in str(err.value)
    assert "not-the-token-77" not in str(err.value)


def test_event_for_a_file_outside_dcache_fails_cleanly(dcache: Dcache) -> None:
    event = storage_event(f"{RAW}/ghost.nxs", dcache.door.url + f"{RAW}/ghost.nxs", 1)
    with pytest.raises(qos.QosError, match="HTTP 404"):
        qos.main(event)
