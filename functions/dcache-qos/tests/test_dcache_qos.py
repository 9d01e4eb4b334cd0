import socket

import pytest
from dcache_qos import Dcache, QosError, main, reached, target_of, wait_for


def test_targets_are_dcache_names() -> None:
    assert target_of("TAPE") == "tape"
    assert target_of("tape+disk") == "disk+tape"
    with pytest.raises(QosError, match="not one of disk, tape, disk\\+tape"):
        target_of("cold")


def test_target_defaults_to_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QOS_TARGET", "disk+tape")
    assert target_of(None) == "disk+tape"


def test_reached_means_current_is_target_and_no_transition_left() -> None:
    assert reached({"currentQos": "tape", "targetQos": None}, "tape")
    assert not reached({"currentQos": "disk", "targetQos": "tape"}, "tape")
    assert not reached({"currentQos": "tape", "targetQos": "disk+tape"}, "tape")


def test_wait_for_stops_when_done_or_out_of_time() -> None:
    calls = iter(range(100))
    result, _ = wait_for(lambda: next(calls), lambda n: n == 3, 5.0, 0.0)
    assert result == 3
    result, waited = wait_for(lambda: 0, lambda n: False, 0.05, 0.01)
    assert result == 0 and waited >= 0.05


def test_dry_run_shows_the_single_and_bulk_requests() -> None:
    single = main({"dry_run": True, "path": "/pnfs/x/run 1.nxs", "target": "disk+tape"})
    assert single == {
        "method": "POST",
        "path": "/api/v1/namespace/pnfs/x/run%201.nxs",
        "body": {"action": "qos", "target": "disk+tape"},
    }
    many = main({"dry_run": True, "files": ["/a", "/b"]})
    assert many["body"]["target"] == ["/a", "/b"] and many["body"]["activity"] == "UPDATE_QOS"


def test_an_unreachable_dcache_is_named_without_the_token() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dcache = Dcache(f"http://127.0.0.1:{port}", "secret-token-123")
    with pytest.raises(QosError) as err:
        dcache.qos("/pnfs/x")
    assert "/api/v1/namespace/pnfs/x" in str(err.value) and "secret-token-123" not in str(err.value)


def test_missing_settings_and_bad_input_are_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCACHE_API_URL", raising=False)
    with pytest.raises(QosError, match="DCACHE_API_URL is missing"):
        main({"check": "/pnfs/x"})
    with pytest.raises(ValueError, match="non-empty list"):
        main({"files": []})
    with pytest.raises(ValueError, match="expected a storage event"):
        main({})
