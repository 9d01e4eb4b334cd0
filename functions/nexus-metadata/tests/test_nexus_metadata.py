import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from faaspub_runtime.events import make_cloudevent
from nexus_metadata import describe, main, write_nexus


def storage_event(path: Path) -> dict:
    """The CloudEvent faaspub sends when ``path`` lands in a watched local folder."""
    return make_cloudevent(
        source="/faaspub/storage/local",
        kind="created",
        path=str(path),
        size=path.stat().st_size,
        checksum=None,
        url=path.as_uri(),
        event_id="e1",
        time="2026-11-23T10:00:00Z",
        storage="local",
    )


def test_nexus_entry_instrument_detector_and_sample(tmp_path: Path) -> None:
    meta = describe(write_nexus(tmp_path / "run42.nxs", frames=3, energy_kev=12.4, sample="thaumatin"))
    assert meta["format"] == "nexus"
    [entry] = meta["entries"]
    assert entry["title"] == {"value": "SPB run 42"}
    [instrument] = entry["instruments"]
    assert instrument["source"]["energy"] == {"value": pytest.approx(12.4), "unit": "keV"}
    [det] = instrument["detectors"]
    assert det["data_shape"] == [3, 4, 4] and det["distance"] == {"value": pytest.approx(0.13), "unit": "m"}
    assert entry["samples"][0]["name"] == {"value": "thaumatin"}


def test_scicat_block_is_flat_with_values_and_units(tmp_path: Path) -> None:
    block = describe(write_nexus(tmp_path / "run.nxs"))["scientificMetadata"]
    assert block["title"] == {"value": "SPB run 42"}
    assert block["experiment_identifier"] == {"value": "p002042"}
    assert block["instrument_name"] == {"value": "SPB/SFX"}
    assert block["source_energy"] == {"value": pytest.approx(9.3), "unit": "keV"}
    assert block["detector_1_distance"]["unit"] == "m"
    assert block["detector_1_data_shape"] == {"value": [2, 4, 4]}
    assert block["sample_temperature"] == {"value": 293.0, "unit": "K"}
    assert block["entries"] == {"value": 1}
    assert all("." not in key and "$" not in key for key in block)


def test_plain_hdf5_lists_datasets_and_has_an_empty_block(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["counts"] = np.zeros((5,), dtype="float32")
    meta = describe(path)
    assert meta["format"] == "hdf5" and meta["entries"] == []
    assert meta["datasets"] == [{"path": "/counts", "shape": [5], "dtype": "float32"}]
    assert meta["scientificMetadata"] == {}


def test_storage_event_writes_a_step_record_next_to_the_file(tmp_path: Path) -> None:
    path = write_nexus(tmp_path / "run7.nxs")
    result = main(storage_event(path))
    sidecar = Path(result["sidecar"])
    assert sidecar == tmp_path / "run7.nxs.nexus-metadata.json"
    record = json.loads(sidecar.read_text())
    assert record["status"] == "success" and record["function"] == "nexus-metadata"
    assert record["input"]["path"] == str(path) and record["input"]["size"] == path.stat().st_size
    assert record["result"]["scientificMetadata"]["sample_name"] == {"value": "lysozyme"}


def test_not_hdf5_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5")
    with pytest.raises(OSError):
        main(storage_event(path))
    assert not (tmp_path / "notes.h5.nexus-metadata.json").exists()


def test_bad_input_is_explained() -> None:
    with pytest.raises(ValueError, match="expected a storage event"):
        main({"unexpected": 1})
