import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from cxi_metadata import describe, main, write_cxi


def test_cxi_file_metadata(tmp_path: Path) -> None:
    path = write_cxi(tmp_path / "run42.cxi", frames=3, shape=(8, 6), energy_ev=12000.0)
    meta = describe(path)
    assert meta["format"] == "cxi"
    assert meta["cxi_version"] == 160
    assert meta["photon_energy_ev"] == pytest.approx(12000.0)
    det = meta["detectors"][0]
    assert det["data_shape"] == [3, 8, 6]
    assert det["distance_m"] == pytest.approx(0.13)
    data = next(d for d in meta["datasets"] if d["path"] == "/entry_1/instrument_1/detector_1/data")
    assert data["dtype"] == "uint16"
    assert data["attrs"]["axes"] == "experiment_identifier:y:x"


def test_plain_hdf5_with_nexus_entry(tmp_path: Path) -> None:
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["counts"] = np.zeros((5,), dtype="float32")
    meta = describe(path)
    assert meta["format"] == "nexus"
    assert meta["datasets"] == [{"path": "/entry/counts", "shape": [5], "dtype": "float32", "attrs": {}}]
    assert meta["photon_energy_ev"] is None


def test_storage_event_writes_sidecar_next_to_input(tmp_path: Path) -> None:
    path = write_cxi(tmp_path / "run7.cxi")
    event = {
        "specversion": "1.0",
        "id": "e1",
        "source": "/faaspub/storage/local",
        "type": "storage.object.created",
        "subject": str(path),
        "time": "2026-11-23T10:00:00Z",
        "datacontenttype": "application/json",
        "data": {"path": str(path), "size": path.stat().st_size, "url": path.as_uri(), "storage": "local"},
    }
    result = main(event)
    sidecar = Path(result["sidecar"])
    assert sidecar == tmp_path / "run7.cxi.metadata.json"
    assert json.loads(sidecar.read_text())["format"] == "cxi"


def test_selftest_runs_without_input() -> None:
    result = main({"selftest": True})
    assert result["entries"] == 1 and result["photon_energy_ev"] == pytest.approx(9300.0)


def test_bad_input_is_explained() -> None:
    with pytest.raises(ValueError, match="expected a storage event"):
        main({"unexpected": 1})
