"""The tag-release state machine, resumable at every step.

A successful tag pipeline becomes one ``releases`` row that walks :data:`RELEASE_STEPS`. Each step
commits what it produced before the next one starts; a worker killed mid-step redoes only that
step, and every step looks before it creates (the archive reserves per function and version, the
backend refuses a second digest for a version, GitLab records are searched first). Until the
release is live a permanent error fails it (DOI draft discarded, previous version stays live);
after that, a failed write-back to GitLab is recorded and the release still completes.

A release job may arrive while its pipeline still runs (the CI release job notifies the service
before it finishes): it is then retried with backoff until GitLab reports the pipeline finished.
Once the release is live, functions the repository no longer holds at the tag are pruned.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from publisher.backends.naming import project_of
from publisher.core.context import Context
from publisher.core.pipeline import Pipeline
from publisher.core.types import FunctionSource, ImageRef, Release, Reservation
from publisher.db.engine import transaction
from publisher.db.models import Job
from publisher.errors import FaaspubError
from publisher.gitlab import artifacts, citation, events, records
from publisher.gitlab.client import GitLab, TransientError
from publisher.gitlab.metrics import STAGE_FAILURES, STAGE_SECONDS
from publisher.gitlab.preview import previews_of
from publisher.gitlab.store import RELEASE_STEPS, TERMINAL, ReleaseRecord
from publisher.logs import bound
from publisher.manifest.load import find_functions, load_manifest
from publisher.tester.junit import read_report

log = logging.getLogger(__name__)

LIVE_STEP = RELEASE_STEPS.index("go_live")
# Pipeline states that still lead somewhere: the release waits for them instead of dropping the job.
UNFINISHED = ("created", "waiting_for_resource", "preparing", "pending", "running")


def tag_version(tag: str) -> str | None:
    """``v1.2.0`` -> ``1.2.0``; None for tags that are not release tags."""
    return tag[1:] if tag.startswith("v") and tag[1:2].isdigit() else None


def catalogue_url(context: Context, name: str) -> str:
    return f"{context.settings.server.base_url}/functions/{name}"


class ReleaseWorker:
    """Runs ``gitlab.release`` jobs."""

    def __init__(self, context: Context, gl: GitLab) -> None:
        self.context = context
        self.gl = gl
        self.pipeline = Pipeline(context)

    def handle(self, payload: dict[str, Any]) -> None:
        project_id, tag, sha = int(payload["project_id"]), str(payload["ref"]), str(payload["sha"])
        version = tag_version(tag)
        if version is None:
            log.info(
                "tag %s of %s is not a release tag (vX.Y.Z); nothing to publish", tag, payload["project"]
            )
            return
        pipeline_id = int(payload["pipeline_id"])
        pipeline = self.gl.pipeline(project_id, pipeline_id)
        status = str(pipeline.get("status"))
        # The payload is only a hint: GitLab's own record of the pipeline decides.
        if pipeline.get("sha") != sha or pipeline.get("ref") != tag:
            log.warning("pipeline %s is not a pipeline of %s at %s; ignored", pipeline_id, tag, sha[:12])
            return
        if status in UNFINISHED:
            raise TransientError(f"pipeline {pipeline_id} of {tag} is {status}; waiting for it to succeed")
        if status != "success":
            log.warning("pipeline %s of %s is %s; nothing is published", pipeline_id, tag, status)
            self._forget(payload)
            self.gl.set_status(
                project_id, sha, "canceled", f"faaspub: pipeline {status}, nothing published", ref=tag
            )
            return
        release_id = self._open(payload, version)
        with bound(release_id=release_id):
            self._advance(release_id)

    def _forget(self, payload: dict[str, Any]) -> None:
        """Free this pipeline's job key: when its failed jobs are retried and it succeeds, the
        webhook of that success must queue the release again, not be taken for a duplicate."""
        base = events.Route(events.RELEASE, int(payload["project_id"]), str(payload["project"]))
        key = events.pipeline_key(base, int(payload["pipeline_id"]))
        with transaction(self.context.sessions) as session:
            session.execute(update(Job).where(Job.key == key).values(key=None))

    def _open(self, payload: dict[str, Any], version: str) -> int:
        with transaction(self.context.sessions) as session:
            query = select(ReleaseRecord).where(
                ReleaseRecord.project_id == int(payload["project_id"]), ReleaseRecord.tag == payload["ref"]
            )
            record = session.scalars(query).first()
            if record is None:
                record = ReleaseRecord(
                    project_id=int(payload["project_id"]),
                    project=str(payload["project"]),
                    tag=payload["ref"],
                    version=version,
                    sha=payload["sha"],
                    pipeline_id=int(payload["pipeline_id"]),
                    step=RELEASE_STEPS[0],
                    data={},
                )
                session.add(record)
                session.flush()
            elif record.step == "failed" and record.pipeline_id != int(payload["pipeline_id"]):
                # A new pipeline for the same tag (re-run after a fix) starts the release over.
                record.step, record.data, record.error = RELEASE_STEPS[0], {}, None
                record.pipeline_id, record.sha = int(payload["pipeline_id"]), payload["sha"]
            return record.id

    def _advance(self, release_id: int) -> None:
        while True:
            with self.context.sessions() as session:
                record = session.get(ReleaseRecord, release_id)
                assert record is not None
                session.expunge(record)
            if record.step in TERMINAL:
                return
            step = record.step
            started = datetime.now(UTC)
            try:
                with STAGE_SECONDS.labels(step).time():
                    produced = getattr(self, f"_{step}")(record)
            except FaaspubError as exc:
                STAGE_FAILURES.labels(step).inc()
                if getattr(exc, "resumable", False):
                    # A platform out of reach (BackendUnavailable), not a bad release: the job is
                    # retried with backoff and redoes this step.
                    raise TransientError(f"{step}: {exc}") from None
                self._failed(record, step, exc)
                if RELEASE_STEPS.index(step) <= LIVE_STEP:
                    return
                produced = {"warnings": [*record.data.get("warnings", []), f"{step}: {exc}"]}
            except Exception:
                STAGE_FAILURES.labels(step).inc()
                raise
            log.info(
                "release %s %s: %s done in %.2fs",
                record.project,
                record.tag,
                step,
                (datetime.now(UTC) - started).total_seconds(),
            )
            self._save(release_id, step, produced)

    def _save(self, release_id: int, step: str, produced: dict[str, Any]) -> None:
        index = RELEASE_STEPS.index(step)
        following = RELEASE_STEPS[index + 1] if index + 1 < len(RELEASE_STEPS) else "done"
        with transaction(self.context.sessions) as session:
            record = session.get(ReleaseRecord, release_id)
            assert record is not None
            if record.step != step:  # another worker finished this step (lease ran out under us)
                return
            record.data = {**record.data, **produced}
            record.step = following

    def _failed(self, record: ReleaseRecord, step: str, exc: FaaspubError) -> None:
        live = RELEASE_STEPS.index(step) > LIVE_STEP
        log.warning("release %s %s: %s failed: %s", record.project, record.tag, step, exc)
        if not live:
            if "reservation" in record.data or step == "reserve":
                self.pipeline.fail(self._source(record), record.version, exc)
            with transaction(self.context.sessions) as session:
                row = session.get(ReleaseRecord, record.id)
                assert row is not None
                row.step, row.error = "failed", f"{step}: {exc}"[:4000]
            self.gl.set_status(
                record.project_id,
                record.sha,
                "failed",
                f"faaspub {step} failed: {exc.message}",
                ref=record.tag,
            )

    # -- helpers -----------------------------------------------------------------------------

    def _fetched(self, record: ReleaseRecord) -> artifacts.Fetched:
        workdir = self.context.settings.state_path / "gitlab" / "releases" / str(record.id)
        return artifacts.fetch(
            self.gl, record.project_id, record.pipeline_id, record.sha, workdir, release=True
        )

    def _source(self, record: ReleaseRecord) -> FunctionSource:
        fetched = self._fetched(record)
        return artifacts.function_source(
            fetched.tree, self.context.settings, record.project, record.project_id, record.sha
        )

    def _release(self, record: ReleaseRecord) -> Release:
        fetched = self._fetched(record)
        return Release(
            source=self._source(record),
            version=record.version,
            image=ImageRef(**record.data["image"]),
            reservation=Reservation(**record.data.get("reservation", {})),
            test=read_report(fetched.files["junit.xml"]),
            ci_job_url=record.data.get("ci_job_url"),
        )

    # -- steps (each returns what it produced, merged into ``data``) -------------------------

    def _fetch(self, record: ReleaseRecord) -> dict[str, Any]:
        self.gl.set_status(
            record.project_id, record.sha, "running", f"faaspub: publishing {record.tag}", ref=record.tag
        )
        fetched = self._fetched(record)
        doc = artifacts.read_json(fetched.files["release.json"])
        image = artifacts.image_ref(doc, self.context.settings, record.project)
        fn = self._source(record)
        if doc.get("version") not in (None, record.version):
            raise FaaspubError(f"release.json says version {doc['version']} but the tag is {record.tag}")
        report = read_report(fetched.files["junit.xml"])
        if not report.ok:
            raise FaaspubError(
                f"{fn.name}: the pipeline's tests failed ({report.failed} failed, "
                f"{report.errors} errors); see the JUnit report"
            )
        self.pipeline.check_bindings(fn)
        built_by = doc.get("ci_job_url")  # the CI build job, named in the signed provenance
        return {
            "image": asdict(image),
            "function": fn.name,
            "namespace": fn.namespace,
            "ci_job_url": built_by if isinstance(built_by, str) else None,
        }

    def _verify(self, record: ReleaseRecord) -> dict[str, Any]:
        artifacts.check_image(ImageRef(**record.data["image"]), self.context.settings)
        return {}

    def _reserve(self, record: ReleaseRecord) -> dict[str, Any]:
        reservation = self.pipeline.reserve(self._source(record), record.version)
        return {"reservation": asdict(reservation)}

    def _go_live(self, record: ReleaseRecord) -> dict[str, Any]:
        release = self._release(record)
        with tempfile.TemporaryDirectory(prefix="faaspub-release-") as tmp:
            files = self.pipeline.release_files(release, Path(tmp))
            files["junit.xml"] = self._fetched(record).files["junit.xml"]
            release = self.pipeline.go_live(release, files)
        return {"reservation": asdict(release.reservation)}

    def _prune(self, record: ReleaseRecord) -> dict[str, Any]:
        """Remove functions this project published before and no longer holds at the tag (idempotent).

        An unreadable function.yaml anywhere in the tree stops the step: a function whose name is
        unknown must not be taken for a removed one.
        """
        fn = self._source(record)
        project = project_of(fn)
        keep = {load_manifest(folder).name for folder in find_functions(self._fetched(record).tree)}
        with self.context.sessions() as session:
            keep.update(previews_of(session, fn.namespace, project))
        removed = self.context.backend.prune(fn.namespace, project, sorted(keep))
        if removed:
            log.info("release %s %s pruned %s", record.project, record.tag, ", ".join(removed))
        return {"pruned": removed}

    def _deployment(self, record: ReleaseRecord) -> dict[str, Any]:
        url = catalogue_url(self.context, record.data["function"])
        env = records.ensure_environment(self.gl, record.project_id, "production", url, "production")
        deployment = records.ensure_deployment(
            self.gl, record.project_id, "production", record.sha, record.tag, tag=True
        )
        return {"environment_id": env, "deployment_id": deployment}

    def _status(self, record: ReleaseRecord) -> dict[str, Any]:
        doi = record.data.get("reservation", {}).get("doi")
        text = f"{record.data['function']} {record.version} is live" + (f", DOI {doi}" if doi else "")
        self.gl.set_status(
            record.project_id,
            record.sha,
            "success",
            text,
            ref=record.tag,
            target_url=catalogue_url(self.context, record.data["function"]),
        )
        return {}

    def _notes(self, record: ReleaseRecord) -> dict[str, Any]:
        doi = record.data.get("reservation", {}).get("doi")
        if doi:
            text = (
                f"**DOI:** [{doi}](https://doi.org/{doi}) — cite this release. "
                f"Catalogue: {catalogue_url(self.context, record.data['function'])}"
            )
            records.add_to_release_notes(
                self.gl, record.project_id, record.tag, f"https://doi.org/{doi}", text
            )
        return {}

    def _citation_mr(self, record: ReleaseRecord) -> dict[str, Any]:
        doi = record.data.get("reservation", {}).get("doi")
        if not doi:
            return {}
        project = self.gl.call("project", self.gl.api.projects.get, record.project_id)
        released = record.created.date() if record.created else datetime.now(UTC).date()
        iid = records.open_update_mr(
            self.gl,
            record.project_id,
            branch=f"faaspub/citation-{record.tag}",
            target=project.default_branch,
            title=f"Cite {record.tag}: DOI {doi}",
            description=f"faaspub published {record.tag} with DOI {doi}. This updates CITATION.cff "
            "(doi, version, date-released) and the README DOI badge.",
            message=f"Record DOI {doi} for {record.tag}",
            edits={
                "CITATION.cff": lambda old: citation.update_cff(old, doi, record.version, released),
                "README.md": lambda old: citation.update_readme(old, doi),
            },
        )
        return {"citation_mr": iid}
