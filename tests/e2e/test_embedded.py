"""Journey 7 end to end: no GitLab, no configuration, one machine (issue 11).

``faaspub serve`` and ``faaspub publish examples/cxi-metadata`` as subprocesses in a fresh folder on
the embedded defaults; a real CXI file copied into ``./data/incoming`` runs the function in a
container of faaspub's own podman service; its sidecar appears next to the file and the activation
is visible through ``faaspub logs`` and the REST API. The private podman service is stopped at the end.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import embedded
from tests.e2e.embedded import Machine
from tests.e2e.functions import write_cxi
from tests.e2e.stack import _socket_owners, wait_for
from tests.infra.containers import require_tool

pytestmark = pytest.mark.containers


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    require_tool("podman")
    workdir = tmp_path / "lab"
    workdir.mkdir()
    embedded.prepare(workdir)
    running = embedded.start(workdir)
    try:
        yield running
    finally:
        running.stop()
        sock = workdir / ".faaspub" / "podman" / "podman.sock"
        assert not _socket_owners(sock.resolve()), "the private podman service is still running"


def test_publish_then_a_file_in_the_local_folder_runs_the_function(machine: Machine, tmp_path: Path) -> None:
    folder = embedded.function_checkout(machine.workdir)
    published = machine.publish(folder)
    assert published["function"] == "cxi-metadata" and published["version"] == "1.0.0"
    assert published["backend"] == "local" and published["doi"] is None
    assert published["digest"].startswith("sha256:") and ".faaspub/oci" in published["image"]
    assert {t["source"] for t in published["triggers"]} == {"local"}

    # Signed with the installation's own key, attested in the local OCI layout, and checked by the user.
    verified = json.loads(machine.faaspub("verify", published["image"], "--json"))
    assert verified["verified"] and verified["digest"] == published["digest"], verified
    assert [c["name"] for c in verified["checks"]] == ["sbom", "signature", "subject", "doi"]

    # Live: invoked by name, the alias runs 1.0.0 in a container.
    run = machine.invoke("cxi-metadata", {"selftest": True})
    assert run["status"] == "success" and run["version"] == "1.0.0", run
    assert run["result"]["format"] == "cxi" and run["result"]["photon_energy_ev"] == pytest.approx(9300.0)

    # Data arrives: a real CXI file is copied into the watched folder.
    source = write_cxi(tmp_path / "run0007.cxi", frames=2)
    shutil.copy(source, machine.incoming / "run0007.cxi")
    sidecar = machine.incoming / "run0007.cxi.metadata.json"
    wait_for(sidecar.is_file, 60, f"{sidecar} (serve log:\n{machine.service.output()[-3000:]})")
    metadata = json.loads(sidecar.read_text())
    assert metadata["file"] == str((machine.incoming / "run0007.cxi").absolute())
    assert metadata["detectors"][0]["data_shape"] == [2, 8, 8]
    assert metadata["photon_energy_ev"] == pytest.approx(12400.0)

    # The run is an activation with the exact version, seen by the CLI and the REST API.
    runs = wait_for(
        lambda: [a for a in machine.logs("cxi-metadata") if a.get("cause", "").startswith("storage")],
        20,
        "the storage-triggered activation in faaspub logs",
    )
    assert runs[-1]["status"] == "success" and runs[-1]["version"] == "1.0.0", runs
    # Results and logs need a token, also on the embedded defaults.
    token = json.loads(
        machine.faaspub("token", "create", "--namespace", "local", "--scope", "read", "--json")
    )
    machine.service.session.headers["Authorization"] = f"Bearer {token['token']}"
    listed = machine.service.get("/api/v1/activations", function="cxi-metadata", logs="true")["items"]
    assert {a["status"] for a in listed} == {"success"} and len(listed) == 2
    by_event = [a for a in listed if a["id"] == runs[-1]["id"]]
    assert by_event and by_event[0]["result"]["sidecar"] == str(sidecar.absolute())
    catalogue = machine.service.get("/api/v1/functions/cxi-metadata")
    assert catalogue["alias_version"] == "1.0.0"
    triggers = {(t["source"], t["match"]) for t in catalogue["triggers"]}
    assert triggers == {("local", "*.cxi"), ("local", "*.h5")}
