"""The notebook client against uvicorn serving the app, and the example notebook run cell by cell."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest

from publisher import client as client_module
from publisher.client import CatalogueError, Client
from tests.catalogue.conftest import ROOT, Seeded

NOTEBOOK = ROOT / "examples" / "notebooks" / "catalogue.ipynb"


def test_read_the_catalogue(seeded: Seeded, live: str) -> None:
    with Client(live) as fp:
        assert [f["name"] for f in fp.functions()] == ["cxi-metadata", "hello"]
        assert [f["name"] for f in fp.functions("hell")] == ["hello"]
        assert [f["name"] for f in fp.search(keyword="hdf5")] == ["cxi-metadata"]
        assert [f["name"] for f in fp.search(trigger_path="/incoming/x")] == ["cxi-metadata", "hello"]
        assert len(fp.search(limit=1)) == 1
        hello = fp.function("local/hello")
        assert hello["doi"] == "10.5281/zenodo.1002" and "@software" in hello["citation"]["bibtex"]
        assert [v["version"] for v in fp.versions("hello")] == ["1.1.0", "1.0.0"]
        found = fp.version_by_doi("https://doi.org/10.5281/zenodo.1001")
        assert (found["function"], found["version"]) == ("hello", "1.0.0")
        with pytest.raises(CatalogueError) as missing:
            fp.function("nope")
        assert missing.value.status == 404 and "nope" in missing.value.message
        with pytest.raises(CatalogueError, match="404"):
            fp.version_by_doi("10.1/none")


def test_activations_follow_cursors(seeded: Seeded, live: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "PAGE", 2)  # several pages for 7 activations
    with Client(live) as anonymous:
        with pytest.raises(CatalogueError) as denied:
            anonymous.logs("past0003")  # results and logs need a token in every mode
        assert denied.value.status == 401
    with Client(live, token=seeded.tokens["local:read"]) as fp:
        everything = fp.activations(limit=None)
        assert [a["id"] for a in everything] == list(reversed(seeded.activation_ids))
        assert [a["id"] for a in fp.activations(limit=3)] == ["past0006", "past0005", "past0004"]
        failed = fp.activations("hello", status="failed", since=datetime.now(UTC) - timedelta(days=1))
        assert [a["id"] for a in failed] == ["past0006", "past0003", "past0000"]
        assert fp.logs("past0003") == ["line 3"]
        with_logs = fp.activations(version="1.0.0", logs=True, limit=1)[0]
        assert with_logs["logs"] == ["line 5"]


def test_invoke_and_follow(seeded: Seeded, live: str) -> None:
    with Client(live) as anonymous:
        with pytest.raises(CatalogueError) as denied:
            anonymous.invoke("hello", {})
        assert denied.value.status == 401
    token = seeded.tokens["local:invoke"]
    fp = Client(live, token=token)
    assert token not in repr(fp) and token not in repr(fp._http.auth)
    run = fp.invoke("hello", {"name": "Ada"}, version="1.0.0")
    assert (run["status"], run["version"], run["result"]) == ("success", "1.0.0", {"greeting": "Hello, Ada!"})
    assert any("invoked hello@1.0.0" in line for line in fp.logs(run["id"]))

    done = threading.Event()
    followed: list[str] = []

    def invoke_later() -> None:
        time.sleep(0.3)
        for name in ("one", "two"):
            followed.append(fp.invoke("hello", {"name": name})["id"])
        done.set()

    worker = threading.Thread(target=invoke_later)
    worker.start()
    seen = []
    deadline = time.monotonic() + 20
    for activation in fp.follow("hello", interval=0.1, stop=lambda: time.monotonic() > deadline):
        seen.append(activation["id"])
        if len(seen) == 2:
            break
    worker.join()
    assert seen == followed  # only the new ones, oldest first
    fp.close()


def test_notebook_is_valid_and_runs(seeded: Seeded, live: str, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    monkeypatch.setenv("FAASPUB_URL", live)
    monkeypatch.setenv("FAASPUB_TOKEN", seeded.tokens["local:invoke"])
    namespace: dict[str, object] = {}
    ran = 0
    for cell in notebook.cells:
        if cell.cell_type != "code" or "long-running" in cell.metadata.get("tags", []):
            continue
        exec(compile(cell.source, f"{NOTEBOOK.name}[{ran}]", "exec"), namespace)
        ran += 1
    assert ran >= 8
    run = namespace["run"]
    assert isinstance(run, dict) and run["result"] == {"greeting": "Hello, notebook!"}
    assert seeded.backend.calls[-1][:4] == ("invoke", "local", "hello", {"name": "notebook"})


def test_notebook_has_no_outputs_or_secrets() -> None:
    text = Path(NOTEBOOK).read_text(encoding="utf-8")
    notebook = nbformat.reads(text, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    assert "fp_" not in text
