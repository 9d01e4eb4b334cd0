"""nexus-metadata: describe a NeXus/HDF5 file (NXentry, NXinstrument, NXsource, NXdetector, NXsample)
and write a JSON sidecar with the description and the SciCat ``scientificMetadata`` block.

Called with a CloudEvents storage event (a file landed), with ``{"path": ...}`` for a local file, or
with ``{"selftest": true}``, which writes a small NeXus file to /tmp and reads it back. The sidecar
``<file>.nexus-metadata.json`` is a step record (:mod:`faaspub_runtime.steps`): functions that
follow this one (scicat-ingest) trigger on it. Files are read and written through the runtime's
``open_input``/``write_output``: a local folder, dCache (WebDAV, ``DCACHE_TOKEN`` secret) or S3.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np

FUNCTION = "nexus-metadata"
# What each NeXus base class contributes to the SciCat block: field -> scientificMetadata key suffix.
FIELDS = {
    "NXentry": (
        "title",
        "start_time",
        "end_time",
        "experiment_identifier",
        "entry_identifier",
        "program_name",
    ),
    "NXinstrument": ("name",),
    "NXsource": ("name", "type", "probe", "energy", "current"),
    "NXmonochromator": ("energy", "wavelength"),
    "NXdetector": ("description", "type", "distance", "x_pixel_size", "y_pixel_size", "count_time"),
    "NXsample": ("name", "sample_id", "chemical_formula", "temperature", "pressure", "description"),
}
PREFIX = {
    "NXentry": "",
    "NXinstrument": "instrument_",
    "NXsource": "source_",
    "NXmonochromator": "monochromator_",
    "NXsample": "sample_",
}


def _text(value: Any) -> Any:
    """HDF5 values and attributes as JSON-friendly Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return _text(value.reshape(-1)[0])
        return [_text(v) for v in value.tolist()] if value.size <= 16 else f"array{list(value.shape)}"
    if isinstance(value, np.generic):
        return value.item()
    return value


def nx_class(item: Any) -> str | None:
    value = _text(item.attrs.get("NX_class")) if hasattr(item, "attrs") else None
    return value if isinstance(value, str) else None


def _groups(group: h5py.Group, kind: str) -> Iterator[tuple[str, h5py.Group]]:
    """Direct children of ``group`` of NeXus class ``kind``, by name."""
    for name in sorted(group):
        child = group.get(name, getlink=False)
        if isinstance(child, h5py.Group) and nx_class(child) == kind:
            yield name, child


def _field(group: h5py.Group, name: str) -> Any:
    """A scalar field as ``{"value": …, "unit": …}`` (unit when the field has a ``units`` attribute)."""
    item = group.get(name)
    if not isinstance(item, h5py.Dataset) or item.size > 16:
        return None
    value = _text(item[()])
    unit = _text(item.attrs.get("units")) if "units" in item.attrs else None
    return {"value": value, "unit": unit} if unit else {"value": value}


def _fields(group: h5py.Group, kind: str) -> dict[str, Any]:
    return {name: found for name in FIELDS[kind] if (found := _field(group, name)) is not None}


def _detector(name: str, group: h5py.Group) -> dict[str, Any]:
    data = group.get("data")
    shape = list(data.shape) if isinstance(data, h5py.Dataset) else None
    return {"name": name, "path": group.name, **_fields(group, "NXdetector"), "data_shape": shape}


def describe_entry(name: str, entry: h5py.Group) -> dict[str, Any]:
    """One NXentry: its own fields, its instrument (source, monochromator, detectors) and samples."""
    found: dict[str, Any] = {"name": name, **_fields(entry, "NXentry")}
    for inst_name, instrument in _groups(entry, "NXinstrument"):
        described: dict[str, Any] = {"name": inst_name, **_fields(instrument, "NXinstrument")}
        for kind in ("NXsource", "NXmonochromator"):
            for _, part in _groups(instrument, kind):
                described[kind.removeprefix("NX")] = _fields(part, kind)
        described["detectors"] = [_detector(n, g) for n, g in _groups(instrument, "NXdetector")]
        found.setdefault("instruments", []).append(described)
    found["samples"] = [{"group": n, **_fields(g, "NXsample")} for n, g in _groups(entry, "NXsample")]
    return found


def scientific_metadata(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The SciCat block: flat keys, each ``{"value": …, "unit": …}``, from the first entry.

    Flat names (``source_energy``, ``detector_1_distance``) keep the keys free of the dots and
    dollar signs SciCat escapes, and searchable in its UI.
    """
    if not entries:
        return {}
    entry = entries[0]
    block: dict[str, Any] = {}

    def add(prefix: str, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            if isinstance(value, dict) and "value" in value:
                block[prefix + key] = value

    add(PREFIX["NXentry"], entry)
    for instrument in entry.get("instruments", [])[:1]:
        add(PREFIX["NXinstrument"], instrument)
        add(PREFIX["NXsource"], instrument.get("source", {}))
        add(PREFIX["NXmonochromator"], instrument.get("monochromator", {}))
        for i, det in enumerate(instrument["detectors"], start=1):
            add(f"detector_{i}_", det)
            if det["data_shape"]:
                block[f"detector_{i}_data_shape"] = {"value": det["data_shape"]}
    for sample in entry.get("samples", [])[:1]:
        add(PREFIX["NXsample"], sample)
    block["entries"] = {"value": len(entries)}
    return block


def describe(path: Path | str, content: IO[bytes] | None = None) -> dict[str, Any]:
    """The file's NeXus description and its SciCat block (plain HDF5 gets its datasets listed)."""
    with h5py.File(content or path, "r") as f:
        entries = [describe_entry(name, group) for name, group in _groups(f, "NXentry")]
        datasets: list[dict[str, Any]] = []
        if not entries:
            f.visititems(
                lambda name, item: (
                    datasets.append({"path": "/" + name, "shape": list(item.shape), "dtype": str(item.dtype)})
                    if isinstance(item, h5py.Dataset)
                    else None
                )
            )
        return {
            "file": str(path),
            "format": "nexus" if entries else "hdf5",
            "attributes": {k: _text(v) for k, v in f.attrs.items()},
            "entries": entries,
            "datasets": datasets,
            "scientificMetadata": scientific_metadata(entries),
        }


def write_nexus(path: Path, frames: int = 2, energy_kev: float = 9.3, sample: str = "lysozyme") -> Path:
    """A small but real NeXus file (NXentry/NXinstrument/NXsource/NXdetector/NXsample)."""
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["title"] = "SPB run 42"
        entry["start_time"] = "2026-11-23T10:00:00Z"
        entry["end_time"] = "2026-11-23T10:05:00Z"
        entry["experiment_identifier"] = "p002042"
        entry["entry_identifier"] = "42"
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        instrument["name"] = "SPB/SFX"
        source = instrument.create_group("source")
        source.attrs["NX_class"] = "NXsource"
        source["name"] = "European XFEL"
        source["probe"] = "x-ray"
        source["energy"] = energy_kev
        source["energy"].attrs["units"] = "keV"
        det = instrument.create_group("detector")
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = np.arange(frames * 16, dtype="uint16").reshape(frames, 4, 4)
        det["distance"] = 0.13
        det["distance"].attrs["units"] = "m"
        det["x_pixel_size"] = 200e-6
        det["x_pixel_size"].attrs["units"] = "m"
        det["description"] = "AGIPD"
        smp = entry.create_group("sample")
        smp.attrs["NX_class"] = "NXsample"
        smp["name"] = sample
        smp["temperature"] = 293.0
        smp["temperature"].attrs["units"] = "K"
    return path


def _from_event(params: dict[str, Any]) -> dict[str, Any]:
    from faaspub_runtime.events import open_input  # in every faaspub runtime image
    from faaspub_runtime.steps import resolve, write_record

    step = resolve(params)
    with open_input(step.data) as handle:
        # h5py needs to seek: a remote stream (WebDAV, S3) is read into memory first.
        content = handle if step.data.storage == "local" else io.BytesIO(handle.read())
        metadata = describe(step.data.path, content)
    return {**metadata, "sidecar": write_record(step, FUNCTION, metadata)}


def main(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("specversion") == "1.0" or "event" in params:
        return _from_event(params)
    if params.get("selftest"):
        return describe(write_nexus(Path(tempfile.mkdtemp()) / "selftest.nxs"))
    if "path" in params:
        return describe(Path(str(params["path"])))
    raise ValueError("expected a storage event, {'path': ...} or {'selftest': true}")
