"""The catalogue pages in a real Chromium (Playwright), against uvicorn on a loopback port.

Journey: reach the search box with the keyboard, search, open the function, switch citation tabs,
invoke it from the form, see the new activation in the table, open its logs. Screenshots go to
test-artifacts/screenshots/ for review.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.catalogue.conftest import ROOT, Seeded

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-artifacts" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: install the chromium package")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture()
def page(browser: object, live: str) -> Iterator[object]:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport={"width": 1366, "height": 800}, base_url=live)
    tab = context.new_page()
    foreign: list[str] = []
    tab.on("request", lambda request: None if request.url.startswith(live) else foreign.append(request.url))
    tab.set_default_timeout(10_000)
    yield tab
    context.close()
    assert foreign == [], f"requests to other hosts: {foreign}"


def shot(tab: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_search_invoke_and_read_logs(seeded: Seeded, page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto("/")
    # Keyboard: the search box is reachable with Tab from the top of the page.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "search":
            break
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.type("hello")
    page.keyboard.press("Enter")
    page.wait_for_url("**/?q=hello*")
    expect(page.get_by_role("link", name="hello", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="cxi-metadata")).to_have_count(0)
    shot(page, "01-search")

    page.get_by_role("link", name="hello", exact=True).click()
    page.wait_for_url("**/functions/local/hello")
    expect(page.get_by_role("heading", level=1)).to_contain_text("hello 1.1.0")
    # Citation tabs: BibTeX first; arrow keys move between tabs.
    bibtex = page.locator("#panel-bibtex")
    expect(bibtex).to_be_visible()
    expect(page.locator("#panel-apa")).to_be_hidden()
    page.get_by_role("tab", name="BibTeX").focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#panel-apa")).to_be_visible()
    expect(page.locator("#panel-apa")).to_contain_text("(Version 1.1.0)")
    expect(bibtex).to_be_hidden()
    page.get_by_role("tab", name="CFF").click()
    expect(page.locator("#panel-cff")).to_contain_text("doi: 10.5281/zenodo.1002")
    expect(page.locator("svg.chart")).to_be_visible()
    shot(page, "02-function")

    rows_before = page.locator("#activations-body tr").count()
    page.get_by_label("API token (invoke scope)").fill(seeded.tokens["local:invoke"])
    page.get_by_label("Parameters (JSON object)").fill('{"name": "Browser"}')
    page.get_by_role("button", name="Invoke").click()
    link = page.locator("#invoke-activation")
    expect(link).to_be_visible()
    expect(page.locator("#invoke-result")).to_contain_text("Hello, Browser!")
    activation_id = link.inner_text()
    expect(page.locator("#activations-body tr")).to_have_count(rows_before + 1)
    expect(page.locator("#activations-body tr").first).to_contain_text(activation_id[:12])
    assert seeded.backend.calls[-1][:4] == ("invoke", "local", "hello", {"name": "Browser"})
    shot(page, "03-invoked")

    # The token stays in this tab's sessionStorage only.
    page.reload()
    expect(page.get_by_label("API token (invoke scope)")).to_have_value(seeded.tokens["local:invoke"])
    page.locator("#activations-body tr").first.get_by_role("link").click()
    page.wait_for_url(f"**/activations/{activation_id}")
    # Logs are never public: the page asks for a token once, then shows them.
    expect(page.locator("#logs")).to_have_count(0)
    page.get_by_label("API token").fill(seeded.tokens["local:read"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/activations/{activation_id}")
    expect(page.locator("#logs")).to_contain_text("invoked hello@1.1.0")
    expect(page.get_by_text("success")).to_be_visible()
    shot(page, "04-activation")


def test_invoke_form_reports_errors(seeded: Seeded, page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto("/functions/local/hello")
    page.get_by_label("API token (invoke scope)").fill("fp_wrong")
    page.get_by_role("button", name="Invoke").click()
    expect(page.locator("#invoke-result .error")).to_contain_text("the token is not valid")
    page.get_by_label("API token (invoke scope)").fill(seeded.tokens["local:read"])
    page.get_by_label("Parameters (JSON object)").fill("{not json")
    page.get_by_role("button", name="Invoke").click()
    expect(page.locator("#invoke-result .error")).to_contain_text("not valid JSON")
    page.get_by_label("Parameters (JSON object)").fill("{}")
    page.get_by_role("button", name="Invoke").click()
    expect(page.locator("#invoke-result .error")).to_contain_text("no invoke right on namespace local")
    assert seeded.backend.calls == []
    shot(page, "05-invoke-error")


def test_deliveries_page_in_browser(seeded: Seeded, page: object) -> None:
    from playwright.sync_api import Page, expect

    from tests.catalogue.test_api import seed_events

    assert isinstance(page, Page)
    seed_events(seeded, count=2, dead=2)
    page.goto("/")
    page.get_by_role("link", name="Deliveries").click()
    page.get_by_label("API token").fill(seeded.tokens["*:read"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Storage events that could not be delivered")).to_be_visible()
    expect(page.get_by_role("row")).not_to_have_count(0)
    expect(page.get_by_text("/incoming/f1.txt")).to_be_visible()
    shot(page, "06-deliveries")
