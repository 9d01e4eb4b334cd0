"""Who a job is about, as GitLab says: checked by the worker before it acts on any project.

A webhook body carries a project id and a path; the intake can only check the path against the
groups the delivery's secret covers, while the worker acts on the id. So before a job touches a
project, the worker asks GitLab for the path of that id: it must be the path the delivery claimed
and lie in a group its credentials cover. Otherwise the job is refused (its delivery is recorded as
``refused``) and nothing is published, written to GitLab or removed.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update

from publisher.core.context import Context
from publisher.db.engine import transaction
from publisher.db.models import WebhookDelivery
from publisher.errors import FaaspubError
from publisher.gitlab.auth import ALL_GROUPS, admits
from publisher.gitlab.client import GitLab

log = logging.getLogger(__name__)


def mismatch(gl: GitLab, payload: dict[str, Any], served: list[str]) -> str | None:
    """None when GitLab confirms the job's project; else the reason to refuse it.

    ``payload["groups"]`` are the groups the delivery's credentials cover; jobs that GitLab itself
    reported (reconciliation, the CI job's notification) carry none and need only the path to match.
    """
    project_id, claimed = payload.get("project_id"), str(payload.get("project") or "")
    try:
        path = gl.project_path(int(str(project_id)))
    except (FaaspubError, ValueError) as exc:
        return f"project {project_id} cannot be looked up in GitLab ({exc})"
    if path.casefold() != claimed.casefold():
        return f"project {project_id} is {path} in GitLab, not {claimed} as the delivery claimed"
    groups = frozenset(payload.get("groups") or [ALL_GROUPS])
    if not admits(groups, served, path):
        return f"project {path} is not in a group the delivery's credentials cover"
    return None


def refuse(context: Context, payload: dict[str, Any], reason: str) -> None:
    """Record the refusal on the job's delivery (when it came from one) and in the log."""
    log.warning("job refused: %s", reason)
    delivery = payload.get("delivery_id")
    if delivery is None:
        return
    with transaction(context.sessions) as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == int(delivery))
            .values(outcome="refused", detail=reason[:1000])
        )
