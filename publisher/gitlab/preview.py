"""Merge-request previews (``NAME--mr-IID``) and the staging deployment of the default branch.

A preview is deployed from the image the MR pipeline built, and one MR note (found again by its
marker, never duplicated) says how to invoke it and what the release would change. Closing or
merging the MR, or deleting its branch, removes the preview. Previews and staging are bound to the
staging storage path (``storage.staging_prefix``), never to the released version's data paths.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from publisher.core.context import Context
from publisher.core.types import FunctionSource, ImageRef, Release
from publisher.db.engine import transaction
from publisher.db.models import Function, Version
from publisher.gitlab import artifacts, records
from publisher.gitlab.client import GitLab
from publisher.gitlab.metrics import STAGE_SECONDS
from publisher.gitlab.store import PreviewRecord
from publisher.manifest.model import StorageTrigger
from publisher.manifest.validate import validate_folder

log = logging.getLogger(__name__)

NOTE_MARK = "<!-- faaspub-preview -->"
# The names preview_release gives: NAME--staging and NAME--mr-IID.
PREVIEW_NAME = re.compile(r"--(?:staging|mr-\d+)\Z")


def preview_release(fn: FunctionSource, image: ImageRef, suffix: str, prefix: str | None = None) -> Release:
    """The function renamed ``NAME--SUFFIX``, without storage triggers, as a release of its commit.

    Its ``output`` folder moves under the staging ``prefix`` like its triggers (and is dropped
    without one): a preview never writes where the released version does.
    """
    output = prefix.rstrip("/") + fn.manifest.output if prefix and fn.manifest.output else None
    update: dict[str, object] = {"name": f"{fn.name}--{suffix}", "triggers": [], "output": output}
    manifest = fn.manifest.model_copy(update=update)
    version = f"0.0.0-{suffix}.{(fn.commit or 'local')[:12]}"
    return Release(source=replace(fn, manifest=manifest), version=version, image=image)


def previews_of(session: Session, namespace: str, project: str) -> list[str]:
    """The staging and merge-request preview functions recorded for ``project`` (a backend project key).

    They follow the default branch and open merge requests, so a tag release never prunes them.
    """
    query = select(Function.name).where(Function.namespace == namespace, Function.project == project)
    return sorted(name for name in session.scalars(query) if PREVIEW_NAME.search(name))


def staging_triggers(fn: FunctionSource, prefix: str | None) -> list[StorageTrigger]:
    """The function's storage triggers moved under the staging prefix (none when no prefix is set).

    Previews must never see production data, so their paths are the released paths re-rooted:
    ``/pnfs/raw/SPB`` becomes ``<prefix>/pnfs/raw/SPB``; S3 keys get the prefix after the bucket.
    """
    if not prefix:
        return []
    moved = []
    for trigger in fn.manifest.storage_triggers():
        if trigger.source == "s3":
            bucket, _, key = trigger.path.partition("/")
            path = "/".join(p for p in (bucket, prefix.strip("/"), key) if p)
        else:
            path = prefix.rstrip("/") + trigger.path
        moved.append(trigger.model_copy(update={"path": path}))
    return moved


class PreviewWorker:
    """Runs ``gitlab.preview``, ``gitlab.staging`` and ``gitlab.preview_remove`` jobs."""

    def __init__(self, context: Context, gl: GitLab) -> None:
        self.context = context
        self.gl = gl

    # -- deploy ------------------------------------------------------------------------------

    def _built(self, payload: dict[str, Any], kind: str) -> tuple[FunctionSource, ImageRef] | None:
        project_id, pipeline_id, sha = (
            int(payload["project_id"]),
            int(payload["pipeline_id"]),
            str(payload["sha"]),
        )
        pipeline = self.gl.pipeline(project_id, pipeline_id)
        if pipeline.get("status") != "success" or pipeline.get("sha") != sha:
            log.warning("pipeline %s is not a successful pipeline at %s; ignored", pipeline_id, sha[:12])
            return None
        workdir = self.context.settings.state_path / "gitlab" / kind / f"{project_id}-{pipeline_id}"
        fetched = artifacts.fetch(self.gl, project_id, pipeline_id, sha, workdir, release=False)
        build = artifacts.read_json(fetched.files["build.json"])
        image = artifacts.image_ref(build, self.context.settings, str(payload["project"]))
        fn = artifacts.function_source(
            fetched.tree, self.context.settings, str(payload["project"]), project_id, sha
        )
        return fn, image

    def staging(self, payload: dict[str, Any]) -> None:
        built = self._built(payload, "staging")
        if built is None:
            return
        fn, image = built
        project_id, sha, ref = int(payload["project_id"]), str(payload["sha"]), str(payload["ref"])
        with STAGE_SECONDS.labels("staging").time():
            self.gl.set_status(project_id, sha, "running", "faaspub: deploying to staging", ref=ref)
            release = preview_release(fn, image, "staging", self.context.settings.storage.staging_prefix)
            artifacts.check_image(image, self.context.settings)
            self._deploy(fn, release)
            url = self.invoke_url(release.name)
            records.ensure_environment(self.gl, project_id, "staging", url, "staging")
            records.ensure_deployment(self.gl, project_id, "staging", sha, ref, tag=False)
            self.gl.set_status(
                project_id, sha, "success", f"faaspub: staged as {release.name}", ref=ref, target_url=url
            )

    def preview(self, payload: dict[str, Any]) -> None:
        project_id, iid = int(payload["project_id"]), int(payload["mr_iid"])
        mr = self.gl.call(f"merge request !{iid}", self.gl.project(project_id).mergerequests.get, iid)
        if mr.state != "opened":
            log.info("merge request !%s is %s; no preview", iid, mr.state)
            return
        built = self._built(payload, "previews")
        if built is None:
            return
        fn, image = built
        sha = str(payload["sha"])
        with STAGE_SECONDS.labels("preview").time():
            self.gl.set_status(
                project_id, sha, "running", "faaspub: deploying the preview", ref=mr.source_branch
            )
            artifacts.check_image(image, self.context.settings)
            prefix = self.context.settings.storage.staging_prefix
            release = preview_release(fn, image, f"mr-{iid}", prefix)
            self._deploy(fn, release)
            record = self._record(payload, mr.source_branch, release.name)
            body = self.note(fn, release)
            note_id = records.upsert_note(self.gl, project_id, iid, record.note_id, NOTE_MARK, body)
            with transaction(self.context.sessions) as session:
                row = session.get(PreviewRecord, record.id)
                assert row is not None
                row.note_id = note_id
            self.gl.set_status(
                project_id,
                sha,
                "success",
                f"faaspub: preview {release.name} deployed",
                ref=mr.source_branch,
                target_url=self.invoke_url(release.name),
            )

    def _deploy(self, fn: FunctionSource, release: Release) -> None:
        self.context.backend.deploy(release)
        triggers = staging_triggers(fn, self.context.settings.storage.staging_prefix)
        if triggers:
            self.context.backend.bind(release, triggers)

    def _record(self, payload: dict[str, Any], branch: str, name: str) -> PreviewRecord:
        project_id, iid = int(payload["project_id"]), int(payload["mr_iid"])
        with transaction(self.context.sessions) as session:
            query = select(PreviewRecord).where(
                PreviewRecord.project_id == project_id, PreviewRecord.mr_iid == iid
            )
            record = session.scalars(query).first()
            if record is None:
                record = PreviewRecord(
                    project_id=project_id,
                    project=str(payload["project"]),
                    mr_iid=iid,
                    source_branch=branch,
                    functions=[],
                )
                session.add(record)
            record.sha, record.state, record.source_branch = str(payload["sha"]), "active", branch
            record.functions = sorted({*record.functions, name})
            session.flush()
            session.expunge(record)
            return record

    def invoke_url(self, name: str) -> str:
        return f"{self.context.settings.server.base_url}/api/v1/functions/{name}/invoke"

    def note(self, fn: FunctionSource, release: Release) -> str:
        """The MR note: how to invoke the preview and what releasing this MR would change."""
        lines = [
            NOTE_MARK,
            f"### faaspub preview `{release.name}`",
            "",
            f"Invoke: `POST {self.invoke_url(release.name)}` (commit {(fn.commit or '')[:12]}, "
            f"image `{release.image.pinned}`)",
            "",
            "**What a release of this branch would change**",
            "",
            *self.changes(fn),
            "",
            "**Citation check**",
            "",
            *self.citation_check(fn),
        ]
        return "\n".join(lines)

    def changes(self, fn: FunctionSource) -> list[str]:
        manifest = fn.manifest
        new_triggers = sorted(
            f"{t.source}:{t.path} {','.join(t.events)} {t.match}" for t in manifest.storage_triggers()
        )
        with self.context.sessions() as session:
            live = session.scalars(
                select(Version)
                .join(Function)
                .where(
                    Function.namespace == fn.namespace,
                    Function.name == fn.name,
                    Version.version == Function.alias_version,
                )
            ).first()
            old_manifest = dict(live.manifest) if live else None
        if old_manifest is None:
            added = [f"- trigger: `{t}`" for t in new_triggers] or ["- no storage triggers"]
            return [f"- new function `{fn.name}`", *added]
        old_triggers = sorted(
            _describe(t["storage"]) for t in old_manifest.get("triggers", []) if "storage" in t
        )
        out = [f"- trigger added: `{t}`" for t in new_triggers if t not in old_triggers]
        out += [f"- trigger removed: `{t}`" for t in old_triggers if t not in new_triggers]
        old_limits = old_manifest.get("limits", {})
        for key, value in manifest.limits.model_dump().items():
            if old_limits.get(key) != value:
                out.append(f"- limit `{key}`: {old_limits.get(key)} → {value}")
        return out or ["- no change to triggers or limits"]

    @staticmethod
    def citation_check(fn: FunctionSource) -> list[str]:
        _manifest, cff, problems = validate_folder(fn.root)
        if problems:
            return [f"- :x: {p}" for p in problems[:10]]
        return [f"- :white_check_mark: {fn.manifest.citation} is valid" + (f" ({cff.title})" if cff else "")]

    # -- remove ------------------------------------------------------------------------------

    def remove(self, payload: dict[str, Any]) -> None:
        project_id = int(payload["project_id"])
        query = select(PreviewRecord).where(
            PreviewRecord.project_id == project_id, PreviewRecord.state == "active"
        )
        if payload.get("mr_iid") is not None:
            query = query.where(PreviewRecord.mr_iid == int(payload["mr_iid"]))
        else:
            query = query.where(PreviewRecord.source_branch == str(payload["source_branch"]))
        with self.context.sessions() as session:
            previews = list(session.scalars(query))
            session.expunge_all()
        for preview in previews:
            self.remove_one(preview)

    def remove_one(self, preview: PreviewRecord) -> None:
        namespace = artifacts.namespace_of(preview.project, self.context.settings.gitlab.groups)
        for name in preview.functions:
            self.context.backend.undeploy(namespace, name)
        if preview.note_id is not None:
            body = (
                f"{NOTE_MARK}\n### faaspub preview removed\n\nThe merge request was closed, merged or its "
                f"branch deleted; {', '.join(f'`{n}`' for n in preview.functions)} no longer exist."
            )
            records.upsert_note(self.gl, preview.project_id, preview.mr_iid, preview.note_id, NOTE_MARK, body)
        with transaction(self.context.sessions) as session:
            row = session.get(PreviewRecord, preview.id)
            assert row is not None
            row.state = "removed"


def _describe(storage: dict[str, Any]) -> str:
    """A stored storage trigger in the same words as a manifest's (``source:path events match``)."""
    events = ",".join(storage.get("events", ["created"]))
    return f"{storage['source']}:{storage['path']} {events} {storage.get('match', '*')}"
