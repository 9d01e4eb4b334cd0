import io
import zlib

import pytest
from rucio_rule import RuleError, adler32_of, main, matching_rse, names_for, plan_for

BUFFER = ("BUFFER", {"scheme": "davs", "hostname": "door.example.org", "port": 2880, "prefix": "/pnfs/f/raw"})
ARCHIVE = ("ARCHIVE", {"scheme": "davs", "hostname": "door.example.org", "port": 2880, "prefix": "/pnfs/f"})


@pytest.fixture(autouse=True)
def settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUCIO_RULE_RSE_EXPRESSION", "tier=tape")
    monkeypatch.setenv("RUCIO_RULE_COPIES", "2")
    monkeypatch.setenv("RUCIO_RULE_LIFETIME", "")
    monkeypatch.setenv("RUCIO_BUFFER_LIFETIME", "3600")
    monkeypatch.delenv("RUCIO_SCOPE", raising=False)
    monkeypatch.delenv("RUCIO_DATASET", raising=False)


def test_the_longest_matching_prefix_wins() -> None:
    rse, protocol = matching_rse("/pnfs/f/raw/p1/r2/x.h5", [ARCHIVE, BUFFER])
    assert rse == "BUFFER" and protocol["prefix"] == "/pnfs/f/raw"
    assert matching_rse("/pnfs/f/other/x.h5", [ARCHIVE, BUFFER])[0] == "ARCHIVE"
    with pytest.raises(RuleError, match=r"no Rucio RSE holds /elsewhere/x\.h5"):
        matching_rse("/elsewhere/x.h5", [ARCHIVE, BUFFER])
    assert matching_rse("/pnfs/f/rawdata/x", [BUFFER, ("ROOT", {**BUFFER[1], "prefix": "/"})])[0] == "ROOT"


def test_plan_from_path_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_for("/pnfs/f/raw/p002042/r0042/run42.nxs", *BUFFER)
    assert (plan.scope, plan.name, plan.dataset) == ("p002042", "run42.nxs", "p002042.r0042")
    assert plan.pfn == "davs://door.example.org:2880/pnfs/f/raw/p002042/r0042/run42.nxs"
    assert (plan.rse_expression, plan.copies, plan.lifetime, plan.buffer_lifetime) == (
        "tier=tape",
        2,
        None,
        3600,
    )
    monkeypatch.setenv("RUCIO_DATASET", "run-{nope}")
    with pytest.raises(RuleError, match="unknown placeholder 'nope'"):
        plan_for("/pnfs/f/raw/p/r/x", *BUFFER)


def test_bad_lifetime_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUCIO_RULE_LIFETIME", "a week")
    with pytest.raises(RuleError, match="RUCIO_RULE_LIFETIME='a week' is not a whole number"):
        plan_for("/pnfs/f/raw/p/r/x", *BUFFER)


def test_adler32_as_rucio_writes_it() -> None:
    data = b"faaspub" * 300_000
    assert adler32_of(io.BytesIO(data)) == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    assert adler32_of(io.BytesIO(b"")) == "00000001"


def test_names_for_a_path() -> None:
    assert names_for("/a/b/c/d.h5") == {"name": "d.h5", "dir": "c", "dir2": "b"}


def test_dry_run_and_bad_input() -> None:
    plan = main({"dry_run": True, "path": "/pnfs/f/raw/p9/r1/x.h5", "rse_prefix": "/pnfs/f/raw"})
    assert plan["scope"] == "p9" and plan["dataset"] == "p9.r1"
    with pytest.raises(ValueError, match="expected a storage event"):
        main({})
