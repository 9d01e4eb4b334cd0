"""The invariants every fault round ends with; each raises AssertionError naming the round.

* storage events: every event that arrived is delivered, each (event, function version) ran
  exactly once (ledger and activation records agree);
* releases: one concept DOI per function and one published version per released tag on the
  Zenodo test server, and no draft left open;
* liveness: the catalogue alias and the backend's alias name the expected version (the previous
  one when a release failed);
* GitLab: a finished release wrote its deployment, release-notes line and citation MR once;
* webhooks: every delivery answered 2xx is stored with its job, and the job ran.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from publisher.backends import naming
from publisher.backends import openwhisk_entities as ent
from publisher.backends.catalogue import Catalogue
from publisher.db.models import ActivationRecord, Job, WebhookDelivery
from publisher.triggers.store import DeliveryRow, EventRow, LedgerRow
from tests.fakes.gitlab_server import Project as GitLabProject
from tests.fakes.openwhisk_server import OpenWhiskServer
from tests.fakes.zenodo_server import ZenodoFake


def events_delivered_once(sessions: sessionmaker[Session], paths: Iterable[str], round_: str) -> None:
    """Every path arrived as an event, was delivered, and ran once per bound version."""
    expected = sorted(set(paths))
    with sessions() as session:
        statuses = dict(
            session.execute(select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)).all()
        )
        ledger = session.execute(
            select(EventRow.path, LedgerRow.digest, LedgerRow.cause).join(
                EventRow, EventRow.key_hash == LedgerRow.key_hash
            )
        ).all()
        causes = Counter(session.scalars(select(ActivationRecord.cause)).all())
    assert set(statuses) <= {"done"}, f"{round_}: deliveries not done: {statuses}"
    delivered = sorted(path for path, _digest, _cause in ledger)
    missing = sorted(set(expected) - set(delivered))
    assert not missing, f"{round_}: {len(missing)} events lost, e.g. {missing[:5]}"
    twice = [path for path, n in Counter((p, d) for p, d, _ in ledger).items() if n > 1]
    assert not twice, f"{round_}: ledger holds an (event, version) twice: {twice[:5]}"
    ran_twice = {cause: n for cause, n in causes.items() if n > 1}
    assert not ran_twice, f"{round_}: a version ran twice for one event: {list(ran_twice.items())[:5]}"
    not_run = [cause for _, _, cause in ledger if causes[cause] != 1]
    assert not not_run, f"{round_}: ledger entries without exactly one activation: {not_run[:5]}"


def one_doi_per_release(
    zenodo: ZenodoFake,
    namespace: str,
    function: str,
    released: Iterable[str],
    failed: Iterable[str],
    round_: str,
) -> None:
    """One concept for the function; one published record per released tag, none for the others
    unless the release failed after its DOI went out; no open draft anywhere."""
    drafts = [d.id for d in zenodo.drafts()]
    assert not drafts, f"{round_}: Zenodo drafts left open: {drafts}"
    prefix = f"faaspub release {namespace}/{function} "
    versions: Counter[str] = Counter()
    concepts = set()
    for record in zenodo.published():
        for line in str(record.metadata.get("notes", "")).splitlines():
            if line.startswith(prefix):
                versions[line.removeprefix(prefix)] += 1
                concepts.add(record.conceptrecid)
    assert len(concepts) <= 1, f"{round_}: {function} has {len(concepts)} concept records: {concepts}"
    for version in released:
        assert versions[version] == 1, f"{round_}: {function} {version} published {versions[version]} times"
    may_exist = set(released) | set(failed)
    extra = {v: n for v, n in versions.items() if v not in may_exist or n > 1}
    assert not extra, f"{round_}: unexpected published records {extra}"


def live_version(
    sessions: sessionmaker[Session],
    namespace: str,
    function: str,
    expected: str | None,
    round_: str,
    openwhisk: OpenWhiskServer | None = None,
) -> None:
    """The catalogue alias, and the backend's alias action, point at ``expected``."""
    alias = Catalogue(sessions).alias(namespace, function)
    assert alias == expected, f"{round_}: catalogue alias of {function} is {alias}, expected {expected}"
    if openwhisk is None:
        return
    key = f"{naming.package_name(namespace)}/{function}"
    with openwhisk.controller.lock:
        action = openwhisk.controller.actions.get(key)
    found = ent.annotation(action, ent.ALIAS_OF) if action else None
    assert found == expected, f"{round_}: OpenWhisk alias {key} runs {found}, expected {expected}"


def jobs_settled(sessions: sessionmaker[Session]) -> bool:
    """No job is queued or running any more."""
    with sessions() as session:
        return session.scalars(select(Job.id).where(Job.status.in_(("queued", "running")))).first() is None


def webhooks_stored_and_run(sessions: sessionmaker[Session], accepted: Iterable[str], round_: str) -> None:
    """Each delivery answered 2xx (by idempotency key) is stored, and its job finished."""
    keys = sorted(set(accepted))
    with sessions() as session:
        stored = set(
            session.scalars(
                select(WebhookDelivery.idempotency_key).where(WebhookDelivery.idempotency_key.in_(keys))
            ).all()
        )
        jobs = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    lost = [k for k in keys if k not in stored]
    assert not lost, f"{round_}: {len(lost)} deliveries answered 2xx are not stored, e.g. {lost[:3]}"
    unfinished = {status: n for status, n in jobs.items() if status != "done"}
    assert not unfinished, f"{round_}: jobs not finished: {unfinished}"


def written_back_once(gitlab: GitLabProject, tag: str, doi: str, round_: str) -> None:
    """A finished release wrote to GitLab once: one deployment, one DOI line in its notes, one MR."""
    deployments = [d for d in gitlab.deployments.values() if d["ref"] == tag]
    assert len(deployments) == 1, f"{round_}: {len(deployments)} deployments of {tag}"
    notes = gitlab.releases.get(tag, {}).get("description", "")
    assert notes.count(f"(https://doi.org/{doi})") == 1, f"{round_}: release notes of {tag}: {notes!r}"
    requests = [m for m in gitlab.merge_requests.values() if m["source_branch"] == f"faaspub/citation-{tag}"]
    assert len(requests) == 1, f"{round_}: {len(requests)} citation merge requests for {tag}"
