"""The catalogue lists the facility's standard functions apart, with their DOIs (issue 20).

A function is standard when it is published in the namespace ``catalogue.facility_namespace``
(default ``facility``): only the operator publishes there, so no scientist can label their own
function as the facility's.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from publisher.catalogue.record import record_release
from publisher.core.pipeline import citation_dict
from publisher.db.engine import transaction
from publisher.manifest.load import load_function
from tests.catalogue.conftest import Seeded, release_of

ROOT = Path(__file__).resolve().parents[2]
RUCIO_RULE = ROOT / "functions" / "rucio-rule"


def publish_standard(seeded: Seeded, namespace: str = "facility") -> None:
    source = load_function(RUCIO_RULE, namespace)
    with transaction(seeded.context.sessions) as session:
        record_release(session, release_of(source, "1.0.0", "10.5281/zenodo.7001"), citation_dict(source))


def test_standard_functions_are_listed_apart_with_their_dois(seeded: Seeded, client: TestClient) -> None:
    publish_standard(seeded)
    html = client.get("/").text
    section = re.search(r'<section aria-labelledby="facility-h".*?</section>', html, re.S)
    assert section, "no 'Provided by the facility' section"
    assert "rucio-rule" in section.group(0) and "10.5281/zenodo.7001" in section.group(0)
    rest = html[section.end() :]
    assert "rucio-rule" not in rest and "hello" in rest  # listed once, apart from the others
    assert client.get("/namespaces/facility").text.count("provided by the facility") == 1


def test_the_same_function_elsewhere_is_not_the_facilitys(seeded: Seeded, client: TestClient) -> None:
    publish_standard(seeded, namespace="xfel")
    html = client.get("/").text
    assert 'aria-labelledby="facility-h"' not in html
    assert "rucio-rule" in html


def test_a_search_lists_standard_functions_among_the_results(seeded: Seeded, client: TestClient) -> None:
    publish_standard(seeded)
    html = client.get("/", params={"q": "rucio"}).text
    assert 'aria-labelledby="facility-h"' not in html and "rucio-rule" in html
