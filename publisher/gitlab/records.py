"""What faaspub writes back to GitLab: environments, deployments, release notes, MR notes, citation MRs.

Every call looks before it creates, so repeating it after a crash never makes a second record.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from gitlab.exceptions import GitlabError, GitlabGetError

from publisher.gitlab.client import MAX_RETRIES, GitLab, explain


def ensure_environment(gl: GitLab, project_id: int, name: str, external_url: str, tier: str) -> int:
    project = gl.project(project_id)
    for env in gl.call("environments", project.environments.list, get_all=True, search=name):
        if env.name == name:
            return int(env.id)
    data = {"name": name, "external_url": external_url, "tier": tier}
    return int(gl.call(f"environment {name}", project.environments.create, data).id)


def ensure_deployment(gl: GitLab, project_id: int, environment: str, sha: str, ref: str, tag: bool) -> int:
    """One successful deployment of ``sha`` to ``environment`` (a running one left by a crash is finished)."""
    project = gl.project(project_id)
    found = [
        d
        for d in gl.call("deployments", project.deployments.list, get_all=True, environment=environment)
        if d.sha == sha
    ]
    if found:
        deployment = found[0]
    else:
        data = {"environment": environment, "sha": sha, "ref": ref, "tag": tag, "status": "running"}
        deployment = gl.call(f"deployment to {environment}", project.deployments.create, data)
    if deployment.status != "success":
        deployment.status = "success"
        gl.call(f"deployment {deployment.id}", deployment.save)
    return int(deployment.id)


def add_to_release_notes(gl: GitLab, project_id: int, tag: str, marker: str, text: str) -> None:
    """Append ``text`` to the GitLab release of ``tag`` (created when missing) unless ``marker`` is there."""
    project = gl.project(project_id)
    try:
        release = project.releases.get(tag, max_retries=MAX_RETRIES)
    except GitlabGetError as exc:
        if exc.response_code != 404:
            raise explain(exc, f"release {tag}") from None
        gl.call(
            f"release {tag}", project.releases.create, {"tag_name": tag, "name": tag, "description": text}
        )
        return
    description = release.description or ""
    if marker in description:
        return
    release.description = f"{description.rstrip()}\n\n{text}".lstrip()
    gl.call(f"release {tag}", release.save)


def upsert_note(gl: GitLab, project_id: int, mr_iid: int, note_id: int | None, marker: str, body: str) -> int:
    """Keep one MR note (found by id, else by ``marker``) up to date; create it the first time."""
    mr = gl.project(project_id).mergerequests.get(mr_iid, lazy=True)
    note = None
    if note_id is not None:
        try:
            note = mr.notes.get(note_id, max_retries=MAX_RETRIES)
        except GitlabGetError as exc:
            if exc.response_code != 404:
                raise explain(exc, f"note {note_id}") from None
    if note is None:
        for candidate in gl.call("MR notes", mr.notes.list, get_all=True):
            if marker in (candidate.body or ""):
                note = candidate
                break
    if note is None:
        return int(gl.call(f"note on !{mr_iid}", mr.notes.create, {"body": body}).id)
    if note.body != body:
        note.body = body
        gl.call(f"note {note.id}", note.save)
    return int(note.id)


def open_update_mr(
    gl: GitLab,
    project_id: int,
    *,
    branch: str,
    target: str,
    title: str,
    description: str,
    message: str,
    edits: dict[str, Callable[[str | None], str | None]],
) -> int | None:
    """Commit ``edits`` (path -> new content from old) on ``branch`` and open an MR; returns its iid.

    Nothing is committed when no file changes; an open MR from ``branch`` is reused.
    """
    project = gl.project(project_id)
    existing = gl.call(
        "merge requests", project.mergerequests.list, get_all=True, state="opened", source_branch=branch
    )
    if existing:
        return int(existing[0].iid)
    wanted: dict[str, tuple[str | None, str]] = {}
    for path, edit in edits.items():
        old = read_file(gl, project_id, path, target)
        new = edit(old)
        if new is not None and new != old:
            wanted[path] = (old, new)
    if not wanted:
        return None
    try:
        project.branches.get(branch, max_retries=MAX_RETRIES)
    except GitlabGetError as exc:
        if exc.response_code != 404:
            raise explain(exc, f"branch {branch}") from None
        gl.call(f"branch {branch}", project.branches.create, {"branch": branch, "ref": target})
    actions: list[dict[str, Any]] = [
        {
            "action": "create" if old is None else "update",
            "file_path": path,
            "content": base64.b64encode(new.encode()).decode(),
            "encoding": "base64",
        }
        for path, (old, new) in wanted.items()
        if read_file(gl, project_id, path, branch) != new  # committed by an attempt that then crashed
    ]
    if actions:
        data = {"branch": branch, "commit_message": message, "actions": actions}
        gl.call("commit", project.commits.create, data)
    mr = {
        "source_branch": branch,
        "target_branch": target,
        "title": title,
        "description": description,
        "remove_source_branch": True,
    }
    return int(gl.call(f"merge request from {branch}", project.mergerequests.create, mr).iid)


def read_file(gl: GitLab, project_id: int, path: str, ref: str) -> str | None:
    project = gl.project(project_id)
    try:
        data = project.files.raw(file_path=path, ref=ref, max_retries=MAX_RETRIES)
    except GitlabError as exc:
        if exc.response_code == 404:
            return None
        raise explain(exc, f"file {path}") from None
    return bytes(data).decode("utf-8", errors="replace")
