"""cxi-metadata: describe an HDF5 / CXI / NeXus file and write the description as a JSON sidecar.

Called with a CloudEvents storage event (a file landed), with ``{"path": ...}``, or with
``{"selftest": true}``, which writes a small CXI file to /tmp and reads it back (proves that the
image's h5py and numpy wheels load). A storage event is read and answered through the runtime's
``open_input``/``write_output``, so the same code serves a local directory (the file itself), dCache
(WebDAV with the ``DCACHE_TOKEN`` secret) and S3.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np

JOULE_PER_EV = 1.602176634e-19
SIDECAR_SUFFIX = ".metadata.json"


def _plain(value: Any) -> Any:
    """HDF5 attribute values as JSON-friendly Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.size <= 16 else f"array{list(value.shape)}"
    if isinstance(value, np.generic):
        return value.item()
    return value


def _scalar(group: h5py.Group, name: str) -> float | None:
    item = group.get(name)
    if isinstance(item, h5py.Dataset) and item.shape in ((), (1,)):
        return float(np.asarray(item[()]).reshape(-1)[0])
    return None


def _detectors(f: h5py.File) -> list[dict[str, Any]]:
    found = []
    for entry in (f[k] for k in sorted(f) if k.startswith("entry_")):
        instrument = entry.get("instrument_1")
        if not isinstance(instrument, h5py.Group):
            continue
        for name in sorted(k for k in instrument if k.startswith("detector_")):
            det = instrument[name]
            data = det.get("data")
            found.append(
                {
                    "path": det.name,
                    "distance_m": _scalar(det, "distance"),
                    "x_pixel_size_m": _scalar(det, "x_pixel_size"),
                    "y_pixel_size_m": _scalar(det, "y_pixel_size"),
                    "data_shape": list(data.shape) if isinstance(data, h5py.Dataset) else None,
                }
            )
    return found


def _photon_energy_ev(f: h5py.File) -> float | None:
    for entry in (f[k] for k in sorted(f) if k.startswith("entry_")):
        source = entry.get("instrument_1/source_1")
        if isinstance(source, h5py.Group):
            joules = _scalar(source, "energy")
            if joules is not None:
                return round(joules / JOULE_PER_EV, 3)
    for name in ("photon_energy_ev", "photon_energy"):  # common non-CXI spellings at the root
        value = _scalar(f, name)
        if value is not None:
            return value
    return None


def describe(path: Path, content: IO[bytes] | None = None) -> dict[str, Any]:
    """Datasets (path, shape, dtype, attributes), root attributes, detectors and photon energy.

    ``content`` is the file's bytes when it is not on a local disk (read from ``path`` otherwise).
    """
    datasets: list[dict[str, Any]] = []
    with h5py.File(content or path, "r") as f:

        def visit(name: str, item: Any) -> None:
            if isinstance(item, h5py.Dataset):
                datasets.append(
                    {
                        "path": "/" + name,
                        "shape": list(item.shape),
                        "dtype": str(item.dtype),
                        "attrs": {k: _plain(v) for k, v in item.attrs.items()},
                    }
                )

        f.visititems(visit)
        is_cxi = "cxi_version" in f
        is_nexus = any(
            _plain(f[k].attrs.get("NX_class")) == "NXentry" for k in f if isinstance(f[k], h5py.Group)
        )
        return {
            "file": str(path),
            "format": "cxi" if is_cxi else "nexus" if is_nexus else "hdf5",
            "cxi_version": int(f["cxi_version"][()]) if is_cxi else None,
            "entries": sum(1 for k in f if k.startswith("entry")),
            "attributes": {k: _plain(v) for k, v in f.attrs.items()},
            "datasets": sorted(datasets, key=lambda d: d["path"]),
            "detectors": _detectors(f),
            "photon_energy_ev": _photon_energy_ev(f),
        }


def write_cxi(
    path: Path, frames: int = 2, shape: tuple[int, int] = (4, 4), energy_ev: float = 9300.0
) -> Path:
    """A small but real CXI file (used by the self-test and the tests)."""
    with h5py.File(path, "w") as f:
        f["cxi_version"] = 160
        f.attrs["creator"] = "cxi-metadata self-test"
        det = f.create_group("entry_1/instrument_1/detector_1")
        det["data"] = np.arange(frames * shape[0] * shape[1], dtype="uint16").reshape(frames, *shape)
        det["data"].attrs["axes"] = "experiment_identifier:y:x"
        det["distance"] = 0.13
        det["x_pixel_size"] = 200e-6
        det["y_pixel_size"] = 200e-6
        f["entry_1/instrument_1/source_1/energy"] = energy_ev * JOULE_PER_EV
        f["entry_1/data_1/data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
    return path


def _describe_event(params: dict[str, Any]) -> dict[str, Any]:
    from faaspub_runtime.events import StorageEvent, open_input, write_output  # in every runtime image

    event = StorageEvent.from_cloudevent(params)
    with open_input(event) as handle:
        # h5py needs to seek: a remote stream (WebDAV, S3) is read into memory first.
        content = handle if event.storage == "local" else io.BytesIO(handle.read())
        metadata = describe(Path(event.path), content)
    sidecar = write_output(event, SIDECAR_SUFFIX, json.dumps(metadata, indent=2, sort_keys=True))
    return {**metadata, "sidecar": sidecar}


def main(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("specversion") == "1.0":
        return _describe_event(params)
    if params.get("selftest"):
        path = write_cxi(Path(tempfile.mkdtemp()) / "selftest.cxi")
    elif "path" in params:
        path = Path(str(params["path"]))
    else:
        raise ValueError("expected a storage event, {'path': ...} or {'selftest': true}")
    metadata = describe(path)
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    sidecar.write_text(json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8")
    return {**metadata, "sidecar": str(sidecar)}
