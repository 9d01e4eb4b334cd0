"""Group commit: many deliveries in one transaction keep every answer and every record of one at a time."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from publisher.db.models import Job, WebhookDelivery
from publisher.gitlab.intake import GroupCommit, Intake
from tests.gitlab.conftest import WEBHOOK_SECRET, Env
from tests.gitlab.test_gitlab_intake import tag_pipeline_body


def headers(key: str | None = None, token: str = WEBHOOK_SECRET) -> dict[str, str]:
    hdrs = {"x-gitlab-token": token, "x-gitlab-event": "Pipeline Hook"}
    if key is not None:
        hdrs["idempotency-key"] = key
    return hdrs


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def test_one_batch_records_each_delivery_as_if_it_came_alone(env: Env) -> None:
    intake = Intake(env.context.settings, env.context.sessions)
    [earlier] = intake.store([intake.decide(headers("seen-before"), encode(tag_pipeline_body(700)), 0.0)])
    assert earlier.outcome == "queued"
    requests = [
        (headers("a"), tag_pipeline_body(701)),
        (headers("b"), tag_pipeline_body(702)),
        (headers("a"), tag_pipeline_body(701)),  # GitLab resent "a" within the same batch
        (headers("c"), tag_pipeline_body(702)),  # another hook for pipeline 702
        (headers(None), tag_pipeline_body(703)),  # an old GitLab without Idempotency-Key
        (headers("seen-before"), tag_pipeline_body(700)),  # resent after it was stored
        (headers("d", token="wrong"), tag_pipeline_body(704)),
        (headers("e"), {"object_kind": "wiki_page"}),
        (headers("f"), tag_pipeline_body(705)),
    ]
    batch = [intake.decide(h, encode(body), time.perf_counter()) for h, body in requests]
    answers = intake.store(batch)
    assert [(a.status, a.outcome) for a in answers] == [
        (202, "queued"),
        (202, "queued"),
        (200, "duplicate"),
        (200, "duplicate"),
        (202, "queued"),
        (200, "duplicate"),
        (401, "unauthorized"),
        (200, "ignored"),
        (202, "queued"),
    ]
    with env.context.sessions() as session:
        rows = {d.id: d for d in session.scalars(select(WebhookDelivery))}
        jobs = list(session.scalars(select(Job)))
    assert len(rows) == 1 + len(requests)
    assert all(a.delivery_id in rows and rows[a.delivery_id].outcome == a.outcome for a in answers)
    assert sorted(j.payload["pipeline_id"] for j in jobs) == [700, 701, 702, 703, 705]
    for job in jobs:  # each job points at the delivery that created it
        assert rows[job.payload["delivery_id"]].outcome == "queued"
        assert rows[job.payload["delivery_id"]].body["object_attributes"]["id"] == job.payload["pipeline_id"]
    refused = answers[6].delivery_id
    assert refused is not None and rows[refused].body is None  # refused deliveries are kept without body


def test_concurrent_deliveries_are_committed_before_each_answer(env: Env) -> None:
    intake = Intake(env.context.settings, env.context.sessions)
    # Another connection only sees committed rows.
    observer = create_engine(str(env.context.engine.url.render_as_string(hide_password=False)))

    async def deliver(n: int) -> None:
        answer = await intake.handle(headers(str(uuid.uuid4())), encode(tag_pipeline_body(800 + n)), 0.0)
        assert answer.status == 202
        with observer.connect() as conn:
            query = text("SELECT outcome FROM deliveries WHERE id = :id")
            assert conn.execute(query, {"id": answer.delivery_id}).scalar_one() == "queued"

    async def main() -> None:
        await asyncio.gather(*(deliver(n) for n in range(60)))

    try:
        asyncio.run(main())
    finally:
        observer.dispose()
    with env.context.sessions() as session:
        assert len(list(session.scalars(select(Job)))) == 60


def test_group_commit_fails_only_the_item_at_fault() -> None:
    batches: list[list[str]] = []
    release = threading.Event()

    def write(items: list[str]) -> list[str]:
        release.wait(5)
        batches.append(items)
        if "bad" in items:
            raise ValueError("cannot store bad")
        return [item.upper() for item in items]

    writer: GroupCommit[str, str] = GroupCommit(write)

    async def main() -> list[str | BaseException]:
        tasks = [asyncio.ensure_future(writer.submit(item)) for item in ["a", "b", "bad", "c"] * 5]
        await asyncio.sleep(0.05)  # all of them queue up behind the first transaction
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert [r if isinstance(r, str) else "error" for r in results] == ["A", "B", "error", "C"] * 5
    assert all(isinstance(r, ValueError) for r in results if not isinstance(r, str))
    assert max(len(b) for b in batches) > 1  # they were written together, not one by one


@pytest.mark.parametrize("body", [b"\xff\xfe{}", b'{"a": "\x00"}'])
def test_bodies_that_cannot_be_stored_as_text_are_invalid(env: Env, body: bytes) -> None:
    answer = env.post(body)
    assert answer.status_code == 400 and answer.json()["outcome"] == "invalid"


def test_body_is_stored_as_sent(env: Env) -> None:
    sent = b'{"object_kind": "note",  "text": "caf\xc3\xa9 \\u0000 \\ud83d\\ude00"}'
    assert env.post(sent).json()["outcome"] == "ignored"
    with env.context.sessions() as session:
        [row] = session.scalars(select(WebhookDelivery))
    assert row.body == json.loads(sent)
