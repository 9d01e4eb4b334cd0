"""Server-rendered pages: content, semantic structure and no resource from another host."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from publisher.db.engine import transaction
from publisher.db.models import WebhookDelivery
from tests.catalogue.conftest import Seeded
from tests.catalogue.test_api import seed_events

PAGES = ["/", "/?q=hello", "/functions/local/hello", "/activations/past0003", "/deliveries"]


@dataclass
class Page(HTMLParser):
    """The parts of a page the checks look at."""

    tags: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    @property
    def content(self) -> str:
        return " ".join(" ".join(self.text).split())


def parse(client: TestClient, url: str, status: int = 200) -> Page:
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = Page()
    page.feed(response.text)
    return page


@pytest.mark.parametrize("url", PAGES)
def test_pages_are_semantic_and_self_contained(seeded: Seeded, client: TestClient, url: str) -> None:
    seed_events(seeded, count=2, dead=1)
    client.headers["Authorization"] = f"Bearer {seeded.tokens['*:read']}"
    page = parse(client, url)
    names = [tag for tag, _ in page.tags]
    for landmark in ("header", "nav", "main", "h1"):
        assert landmark in names, f"{url} has no <{landmark}>"
    assert all(th.get("scope") in ("col", "row") for th in page.all("th")), url
    labelled = {label.get("for") for label in page.all("label")}
    for control in page.all("input") + page.all("select") + page.all("textarea"):
        if control.get("type") not in ("hidden", "submit"):
            assert control.get("id") in labelled, f"{url}: {control} has no label"
    # Resources come from this service only (links to doi.org are navigation, not resources).
    for tag, attr in (("link", "href"), ("script", "src"), ("img", "src"), ("iframe", "src")):
        for attrs in page.all(tag):
            value = attrs.get(attr) or ""
            assert value.startswith("/") and not value.startswith("//"), f"{url}: external {tag} {value}"
    for attrs in page.all("a"):
        assert attrs.get("target") is None  # no new windows


def test_index_lists_and_searches(client: TestClient) -> None:
    page = parse(client, "/")
    links = [a.get("href") for a in page.all("a")]
    assert "/functions/local/hello" in links and "/functions/xfel/cxi-metadata" in links
    assert "10.5281/zenodo.1000" in page.content
    search = parse(client, "/?q=cxi")
    assert "/functions/xfel/cxi-metadata" in [a.get("href") for a in search.all("a")]
    assert "/functions/local/hello" not in [a.get("href") for a in search.all("a")]
    assert "No function found for this search" in parse(client, "/?q=zzz").content
    assert parse(client, "/?cursor=bad", status=422).content.count("Cursor is not valid") == 1


def test_function_page(client: TestClient) -> None:
    response = client.get("/functions/local/hello")
    page = Page()
    page.feed(response.text)
    text = page.content
    assert "hello 1.1.0" in text
    assert "10.5281/zenodo.1002" in text and "10.5281/zenodo.1001" in text
    assert "@software{" in text and "(Version 1.1.0)" in text and "cff-version: 1.2.0" in text
    assert [t.get("id") for t in page.all("button") if t.get("role") == "tab"] == [
        "tab-bibtex",
        "tab-apa",
        "tab-cff",
    ]
    assert "/incoming" in text and "*.txt" in text
    # The seeded activations (3 of 7 failed, all within the chart's 24 hours)
    assert "7 activations, 3 failed" in text
    assert '<svg class="chart"' in response.text and 'class="failed"' in response.text
    assert "/activations/past0006" in [a.get("href") for a in page.all("a")]
    form = page.all("form")[-1]
    assert form.get("data-url") == "/api/v1/functions/local/hello/invoke"
    assert [o.get("value") for o in page.all("option")] == ["", "1.0.0"]


def test_activation_page_shows_logs(seeded: Seeded, client: TestClient) -> None:
    anonymous = parse(client, "/activations/past0003", status=401)
    assert "line 3" not in anonymous.content and "API token" in anonymous.content
    client.headers["Authorization"] = f"Bearer {seeded.tokens['local:read']}"
    page = parse(client, "/activations/past0003")
    assert "application error" in page.content and "line 3" in page.content
    assert "/functions/local/hello" in [a.get("href") for a in page.all("a")]
    assert "does not exist" in parse(client, "/activations/none", status=404).content
    assert "does not exist" in parse(client, "/functions/local/none", status=404).content


def test_deliveries_page(seeded: Seeded, client: TestClient) -> None:
    seed_events(seeded, count=3, dead=2)
    with transaction(seeded.context.sessions) as session:
        session.add(
            WebhookDelivery(source="gitlab", event="Push Hook", outcome="unauthorized", detail="bad token")
        )
        session.add(WebhookDelivery(source="s3", event="s3:ObjectCreated:Put", outcome="queued"))
    assert "bad token" not in parse(client, "/deliveries", status=401).content
    client.headers["Authorization"] = f"Bearer {seeded.tokens['local:read']}"
    assert "bad token" not in parse(client, "/deliveries", status=403).content  # operators only
    client.headers["Authorization"] = f"Bearer {seeded.tokens['*:read']}"
    page = parse(client, "/deliveries")
    assert "bad token" in page.content and "s3:ObjectCreated:Put" in page.content
    assert "/incoming/f2.txt" in page.content and "/incoming/f1.txt" in page.content
    assert "/incoming/f0.txt" not in page.content  # still pending, not a dead letter
    filtered = parse(client, "/deliveries?outcome=queued")
    assert "bad token" not in filtered.content and "s3:ObjectCreated:Put" in filtered.content


def test_escaping(seeded: Seeded, client: TestClient) -> None:
    from sqlalchemy import update

    from publisher.db.models import Function

    with transaction(seeded.context.sessions) as session:
        session.execute(
            update(Function).where(Function.name == "hello").values(description="<script>x()</script>")
        )
    response = client.get("/functions/local/hello")
    assert "<script>x()" not in response.text and "&lt;script&gt;x()" in response.text


def test_static_files(client: TestClient) -> None:
    assert client.get("/static/catalogue.css").headers["content-type"].startswith("text/css")
    assert "sessionStorage" in client.get("/static/catalogue.js").text
    assert client.get("/static/../pages.py").status_code == 404
