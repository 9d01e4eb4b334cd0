"""Archive and backend faults during tag releases: bursts are retried, what cannot finish fails cleanly.

Each round releases the next version of ``hello`` under one fault plan drawn from the seeded
generator. Bursts of 429/5xx from the Zenodo test server (uploads, rate limits, a publish that
answers 504 after publishing) and 429/503 from the OpenWhisk test server (``fail_next``) must be
retried and the release completes; a persistent fault (Zenodo 5xx beyond the client's retries,
OpenWhisk 500, an image digest the registry does not hold) must fail the release cleanly: draft
discarded, previous version live. The invariants are checked after every round.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from publisher.oci.registry import RegistryClient
from tests.fakes.openwhisk_server import OpenWhiskServer
from tests.fakes.zenodo_server import ZenodoServer
from tests.faults import invariants
from tests.faults.conftest import ReleaseBed, make_bed
from tests.gitlab.conftest import PROJECT, Project

ROUNDS = 30
FUNCTION = "hello"
OW_PREFIXES = [
    "/namespaces/_/packages",
    "/namespaces/_/actions",
    "/namespaces/_/triggers",
    "/namespaces/_/rules",
]


@dataclass(frozen=True)
class Plan:
    """One round's fault: ``inject`` arms it; ``completes`` says whether the release must finish."""

    name: str
    completes: bool
    inject: Callable[[ReleaseBed, dict[str, Any]], None]  # the bed and the round's pipeline


def zenodo_rate_limited(rng: random.Random) -> Plan:
    n = rng.randint(1, 4)

    def inject(bed: ReleaseBed, _pipeline: dict[str, Any]) -> None:
        bed.zenodo.fake.faults.rate_limited, bed.zenodo.fake.faults.retry_after = n, 0

    return Plan(f"zenodo 429 x{n}", True, inject)


def zenodo_upload_5xx(rng: random.Random) -> Plan:
    n = rng.randint(1, 4)

    def inject(bed: ReleaseBed, _pipeline: dict[str, Any]) -> None:
        bed.zenodo.fake.faults.server_errors, bed.zenodo.fake.faults.error_path = n, "/api/files/"

    return Plan(f"zenodo upload 500 x{n}", True, inject)


def zenodo_publish_504(rng: random.Random) -> Plan:
    n = rng.randint(1, 3)

    def inject(bed: ReleaseBed, _pipeline: dict[str, Any]) -> None:
        bed.zenodo.fake.faults.publish_then_504 = n

    return Plan(f"zenodo publishes then answers 504 x{n}", True, inject)


def openwhisk_burst(rng: random.Random) -> Plan:
    prefix, status, n = rng.choice(OW_PREFIXES), rng.choice([429, 503]), rng.randint(1, 3)
    return Plan(
        f"openwhisk {status} x{n} on {prefix}",
        True,
        lambda bed, _pipeline: bed.openwhisk.controller.fail_next(prefix, status, n),
    )


def zenodo_down(rng: random.Random) -> Plan:
    def inject(bed: ReleaseBed, _pipeline: dict[str, Any]) -> None:
        bed.zenodo.fake.faults.server_errors, bed.zenodo.fake.faults.error_path = 10_000, "/api/files/"

    return Plan("zenodo uploads answer 500 for good", False, inject)


def openwhisk_broken(prefixes: list[str], stage: str) -> Callable[[random.Random], Plan]:
    def plan(rng: random.Random) -> Plan:
        prefix = rng.choice(prefixes)
        return Plan(
            f"openwhisk 500 for good at {stage} ({prefix})",
            False,
            lambda bed, _pipeline: bed.openwhisk.controller.fail_next(prefix, 500, 10_000),
        )

    return plan


def digest_missing(rng: random.Random) -> Plan:
    def inject(bed: ReleaseBed, pipeline: dict[str, Any]) -> None:
        registry = RegistryClient(f"http://{bed.project.registry}", insecure=True)
        registry.delete_manifest(PROJECT, bed.image_digest(pipeline))

    return Plan("image digest missing from the registry", False, inject)


PLANS = [
    zenodo_rate_limited,
    zenodo_upload_5xx,
    zenodo_publish_504,
    openwhisk_burst,
    zenodo_down,
    openwhisk_broken(OW_PREFIXES[:2], "deploy"),
    # After deploy moved the alias: the release must put the previous version back.
    openwhisk_broken(OW_PREFIXES[2:], "bind"),
    digest_missing,
]


def schedule(rng: random.Random, rounds: int) -> list[Plan]:
    """Every kind of fault at least once, the other rounds drawn at random, in random order."""
    factories = PLANS + [rng.choice(PLANS) for _ in range(rounds - len(PLANS))]
    rng.shuffle(factories)
    return [factory(rng) for factory in factories]


def heal(bed: ReleaseBed) -> None:
    """Clear whatever a round armed and did not consume."""
    faults = bed.zenodo.fake.faults
    faults.rate_limited = faults.server_errors = faults.publish_then_504 = 0
    with bed.openwhisk.controller.lock:
        bed.openwhisk.controller.faults.clear()


@pytest.fixture
def bed(
    tmp_path: Path,
    project: Project,
    zenodo_server: ZenodoServer,
    openwhisk: OpenWhiskServer,
    monkeypatch: pytest.MonkeyPatch,
) -> ReleaseBed:
    made = make_bed(
        tmp_path, f"sqlite:///{tmp_path / 'faaspub.db'}", project, zenodo_server, openwhisk, monkeypatch
    )
    made.fast_retries()
    return made


def test_archive_and_backend_faults(bed: ReleaseBed, rng: random.Random) -> None:
    bed.tag("1.0.0")
    bed.work()
    record = bed.release("1.0.0")
    assert record is not None and record.step == "done", record.error if record else None
    namespace = record.data["namespace"]
    released, failed, live = ["1.0.0"], list[str](), "1.0.0"
    for n, plan in enumerate(schedule(rng, ROUNDS), start=1):
        version = f"1.{n}.0"
        label = f"round {n} ({version}: {plan.name})"
        pipeline = bed.project.tag_pipeline(f"v{version}")
        plan.inject(bed, pipeline)
        bed.hook(pipeline)
        bed.work()
        heal(bed)
        step = bed.step(version)
        assert step == ("done" if plan.completes else "failed"), f"{label}: release ended {step}"
        (released if plan.completes else failed).append(version)
        live = version if plan.completes else live
        invariants.one_doi_per_release(bed.zenodo.fake, namespace, FUNCTION, released, failed, label)
        invariants.live_version(bed.sessions, namespace, FUNCTION, live, label, bed.openwhisk)


def test_first_release_failing_at_bind_leaves_nothing_live(bed: ReleaseBed) -> None:
    """No previous version to go back to: the function that never went live is removed again.

    One 500 (not retried by the client) fails the rule's PUT; the removal after it goes through.
    """
    bed.openwhisk.controller.fail_next("/namespaces/_/rules", 500, 1)
    bed.tag("1.0.0")
    bed.work()
    heal(bed)
    record = bed.release("1.0.0")
    assert record is not None and record.step == "failed", record.step if record else None
    namespace = record.data["namespace"]
    label = "first release, bind fails"
    invariants.one_doi_per_release(bed.zenodo.fake, namespace, FUNCTION, [], ["1.0.0"], label)
    invariants.live_version(bed.sessions, namespace, FUNCTION, None, label, bed.openwhisk)
