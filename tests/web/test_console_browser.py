"""The console in a real browser (Debian's headless Chromium, driven by Playwright), against
the real API on PostgreSQL with a real worker running the local model: sign in, the overview's
counts against /v1/analytics, a call's page, three calls reviewed with the keyboard alone (and
the analytics and /v1/quality following), a stale write shown, a `read` key refused the
review, a POST without its CSRF token refused, sign-out. Screenshots of every page at
1280×800 and 390 px wide go to reports/screenshots/ (docs/architecture.md says so)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from app.auth.service import create_api_key
from app.config import Settings
from app.db.session import build_engine, build_sessionmaker, session_scope
from support.calls import CALLS
from support.env import process_env
from support.services import CallxProcess, free_port, wait_for

pytestmark = [pytest.mark.services, pytest.mark.model]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "reports" / "screenshots"
# As the machine's probe starts it: no sandbox as root, and no background connections to a
# network that is not there.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
# The shared calls and two more: enough for every review step to find a call in the queue.
BROWSER_CALLS = [
    *CALLS,
    {
        "external_id": "fr-livraison-2",
        "language": "fr",
        "text": "Client: Bonjour, ma commande de la table Ikea Lisabo devait arriver hier et le "
        "suivi n'a pas bougé.\nAgent: Je regarde avec le transporteur.",
    },
    {
        "external_id": "en-usage-2",
        "language": "en",
        "text": "Customer: How do I pair my Sony WH-1000XM5 headphones with a second phone?\n"
        "Agent: Hold the power button for seven seconds, then pick them on the phone.",
    },
]
N = len(BROWSER_CALLS)
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def keys(settings: Settings, clean_db: None) -> dict[str, str]:
    """An admin, two reviewers and a reader, made as `callx keys create` makes them."""
    engine = build_engine(settings)
    made = {}
    with session_scope(build_sessionmaker(engine)) as session:
        for name, scope in [
            ("ops", "admin"),
            ("rita", "review"),
            ("remi", "review"),
            ("ana", "read"),
        ]:
            made[name] = create_api_key(session, scope, name)[1]  # type: ignore[arg-type]
    engine.dispose()
    return made


@pytest.fixture
def console(
    settings: Settings,
    keys: dict[str, str],
    clean_broker: None,
    start_callx: Callable[..., CallxProcess],
) -> str:
    """The API (keys required) and one worker of the local model; every call drawn into the
    audit sample, so that every call waits for a person and /v1/quality counts each label."""
    env = process_env(
        settings,
        CALLX_EXTRACTION__BACKEND="llamacpp",
        CALLX_AUTH__REQUIRED="true",
        CALLX_REVIEW__AUDIT_RATE="1.0",
    )
    port = free_port()
    api = start_callx(["serve", "--port", str(port), "--no-worker", "--no-migrate"], env, "api")
    url = f"http://127.0.0.1:{port}"
    api.wait_http(url + "/healthz")
    start_callx(["worker", "--concurrency", "1"], env, "worker")
    return url


def _api(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": key})


def _submit_and_wait(api: httpx.Client, calls: list[dict[str, Any]]) -> list[str]:
    response = api.post("/v1/batches", json=calls)
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]

    def done() -> bool:
        return bool(api.get(f"/v1/batches/{batch_id}").json()["done"])

    wait_for(done, 300, "the worker to extract the calls", interval=0.5)
    return [str(i) for i in response.json()["transcript_ids"]]


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _reason_totals(api: httpx.Client) -> dict[str, int]:
    """Calls per reason in the overview's default range (the last 30 days, today included),
    from the REST API."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 29 * 86400))
    until = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    assert today
    items = api.get(
        "/v1/analytics/reasons",
        params={"bucket": "day", "since": f"{since}T00:00:00Z", "until": f"{until}T00:00:00Z"},
    ).json()["items"]
    totals: dict[str, int] = {}
    for item in items:
        totals[item["reason"]] = totals.get(item["reason"], 0) + item["count"]
    return totals


def _overview_totals(page: Page) -> dict[str, int]:
    return {
        element.get_attribute("data-reason") or "": int(element.inner_text().replace(",", ""))
        for element in page.locator(".legend strong[data-reason]").all()
    }


def _sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url + "/ui")
    expect(page).to_have_url(url + "/ui/login?next=/ui")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(url + "/ui")


def test_the_console_in_a_browser(console: str, keys: dict[str, str], browser: Browser) -> None:
    url = console
    admin = _api(url, keys["ops"])
    ids = _submit_and_wait(admin, [{**call, "source": "crm"} for call in BROWSER_CALLS])
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    page = context.new_page()

    # Sign in with a review key: the session cookie is HttpOnly, SameSite, and not the key.
    _sign_in(page, url, keys["rita"])
    cookie = next(c for c in context.cookies() if c["name"] == "callx_session")
    assert (
        cookie["httpOnly"] and cookie["sameSite"] == "Lax" and keys["rita"] not in cookie["value"]
    )
    expect(page.get_by_text("Signed in as")).to_contain_text("rita")

    # The overview's counts are /v1/analytics'.
    before = _reason_totals(admin)
    assert sum(before.values()) == N
    assert _overview_totals(page) == before
    expect(page.locator("#tile-calls .figure")).to_have_attribute("data-count", str(N))
    expect(page.locator("#tile-review .figure")).to_have_attribute("data-count", str(N))
    _shot(page, "overview-1280")

    # Every number links to its calls: a reason's count opens the calls list of that reason.
    reason, count = next(iter(before.items()))
    page.locator(f'.legend a:has(strong[data-reason="{reason}"])').click()
    expect(page.locator("#calls-table tbody tr")).to_have_count(count)
    page.goto(url + "/ui/calls")
    expect(page.locator("#calls-table tbody tr")).to_have_count(N)
    _shot(page, "calls-1280")

    # A call's page: the transcript as turns, the answer, every attempt with its model.
    page.locator("#calls-table tbody tr a").first.click()
    expect(page.locator(".turn").first).to_be_visible()
    expect(page.locator("#attempts tbody tr")).to_have_count(1)
    expect(page.locator("#attempts")).to_contain_text("gemma-3-270m")
    _shot(page, "call-1280")

    # Review three calls with the keyboard alone.
    quality_before = admin.get("/v1/quality").json()
    assert quality_before["audit"]["reason"]["n"] == 0
    page.goto(url + "/ui/review")
    expect(page.locator("#review-form")).to_be_visible()
    _shot(page, "review-1280")
    reviewed: list[tuple[str, str, str | None]] = []
    for step in range(3):
        form = page.locator("#review-form")
        call_id = form.get_attribute("action").rsplit("/", 1)[1]  # type: ignore[union-attr]
        machine_reason = form.get_attribute("data-machine-reason")
        machine_product = form.get_attribute("data-machine-product") or None
        name = page.locator("#h-card a").inner_text()
        page.locator("main").focus()
        if step == 0:  # a correction: another reason, picked with its number key
            radios = page.locator("input[name=reason]")
            keys_ = [radios.nth(i).get_attribute("data-key") for i in range(radios.count())]
            values = [radios.nth(i).get_attribute("value") for i in range(radios.count())]
            index = next(i for i, v in enumerate(values) if v != machine_reason)
            page.keyboard.press(keys_[index])  # type: ignore[arg-type]
            expect(page.locator("#changes")).to_contain_text("changed")
            page.keyboard.press("Enter")
            reviewed.append((call_id, values[index] or "", machine_product))
        elif step == 1:  # the model's answer confirmed with Enter
            page.keyboard.press("Enter")
            reviewed.append((call_id, machine_reason or "", machine_product))
        else:  # the product edited: e, type, Enter
            page.keyboard.press("e")
            page.keyboard.press("Control+A")
            page.keyboard.type("Produit corrigé 42")
            page.keyboard.press("Enter")
            reviewed.append((call_id, machine_reason or "", "Produit corrigé 42"))
        expect(page.locator("#saved")).to_be_visible()
        expect(page.locator("#saved")).to_contain_text(name)  # the call's own id
        if step == 0:
            expect(page.locator("#saved ins").first).to_be_visible()  # what the reviewer changed
            _shot(page, "review-saved-1280")
        assert page.locator("#review-form").get_attribute("action") != f"/ui/review/{call_id}"

    for call_id, reason_code, product in reviewed:
        labels = admin.get(f"/v1/transcripts/{call_id}/labels").json()["items"]
        assert [(l_["reason"], l_["product"], l_["labelled_by"]) for l_ in labels] == [
            (reason_code, product, "rita")
        ]
    quality_after = admin.get("/v1/quality").json()
    assert quality_after["audit"]["reason"]["n"] == 3
    after = _reason_totals(admin)
    assert sum(after.values()) == N
    corrected_from = next(
        c["extraction"]["reason"] for c in [admin.get(f"/v1/transcripts/{reviewed[0][0]}").json()]
    )
    expected = dict(before)
    expected[corrected_from] -= 1
    expected[reviewed[0][1]] = expected.get(reviewed[0][1], 0) + 1
    assert after == {k: v for k, v in expected.items() if v}
    page.goto(url + "/ui")
    assert _overview_totals(page) == after
    expect(page.locator("#tile-review .figure")).to_have_attribute("data-count", str(N - 3))
    expect(page.locator("#tile-accuracy")).to_contain_text("/3")

    # `s` skips: the next call is another one; the skipped one stays in the queue.
    page.goto(url + "/ui/review")
    first = page.locator("#review-form").get_attribute("action")
    page.locator("main").focus()
    page.keyboard.press("s")
    expect(page.locator("#review-form")).not_to_have_attribute("action", first or "")
    assert admin.get("/v1/review").json()["items"][0]["transcript_id"] == first.rsplit("/", 1)[1]  # type: ignore[union-attr]

    # Two reviewers on one call: the second save is refused with the API's 409, shown.
    target = admin.get("/v1/review").json()["items"][0]["transcript_id"]
    other = browser.new_context(viewport=DESKTOP, locale="en-US")
    remi = other.new_page()
    _sign_in(remi, url, keys["remi"])
    remi.goto(f"{url}/ui/review/{target}")
    page.goto(f"{url}/ui/review/{target}")
    page.locator("main").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{url}/ui/calls/{target}")
    remi.locator("main").focus()
    remi.keyboard.press("1")
    remi.keyboard.press("Enter")
    expect(remi.locator("#refused")).to_contain_text("version")
    expect(remi.locator("#refused")).to_contain_text("rita")
    _shot(remi, "review-conflict-1280")
    assert len(admin.get(f"/v1/transcripts/{target}/labels").json()["items"]) == 1
    # ... and `s` from there goes on with the queue's next call, not to its end.
    remi.goto(url + "/ui/review")
    queued_next = remi.locator("#review-form").get_attribute("action")
    remi.goto(f"{url}/ui/review/{queued_next.rsplit('/', 1)[1]}")  # type: ignore[union-attr]
    page.goto(f"{url}/ui/review/{queued_next.rsplit('/', 1)[1]}")  # type: ignore[union-attr]
    page.locator("main").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{url}{queued_next.replace('/ui/review/', '/ui/calls/')}")  # type: ignore[union-attr]
    remi.locator("main").focus()
    remi.keyboard.press("Enter")
    expect(remi.locator("#refused")).to_be_visible()
    other.close()

    # Labelling from a call's page goes back to the call's page, showing the label.
    page.goto(f"{url}/ui/calls/{ids[5]}")
    page.get_by_role("link", name="Label this call").click()
    expect(page.locator("#review-form")).to_be_visible()
    page.locator("main").focus()
    page.keyboard.press("7")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{url}/ui/calls/{ids[5]}")
    expect(page.locator("#label")).to_contain_text("other")

    # A read key sees the queue but cannot label; a POST without the CSRF token is refused.
    reader_context = browser.new_context(viewport=DESKTOP, locale="en-US")
    reader = reader_context.new_page()
    _sign_in(reader, url, keys["ana"])
    reader.goto(url + "/ui/review")
    expect(reader.locator("#read-only")).to_be_visible()
    expect(reader.locator("#save")).to_be_disabled()
    queued = reader.locator("#review-form").get_attribute("action")
    token = reader.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = reader.request.post(
        url + queued,
        form={"csrf_token": token or "", "reason": "other", "version": "0"},  # type: ignore[operator]
    )
    assert refused.status == 403 and "scope &#39;read&#39;" in refused.text()
    no_token = page.request.post(url + queued, form={"reason": "other", "version": "0"})  # type: ignore[operator]
    assert no_token.status == 403 and "CSRF" in no_token.text()
    assert admin.get(f"/v1/transcripts/{queued.rsplit('/', 1)[1]}/labels").json()["items"] == []  # type: ignore[union-attr]
    reader_context.close()

    # Every page at 390 px wide, and the overview in French.
    page.set_viewport_size(PHONE)
    for name, path in [
        ("overview", "/ui"),
        ("calls", "/ui/calls"),
        ("call", f"/ui/calls/{ids[0]}"),
        ("review", "/ui/review"),
        ("batches", "/ui/batches"),
        ("models", "/ui/models"),
    ]:
        page.goto(url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow} px wider than a phone"
        _shot(page, f"{name}-390")
    page.set_viewport_size(DESKTOP)
    for name, path in [("batches", "/ui/batches"), ("models", "/ui/models")]:
        page.goto(url + path)
        _shot(page, f"{name}-1280")
    # The same figure as /v1/quality's (each label of the audit sample written above).
    reviewed_n = admin.get("/v1/quality").json()["audit"]["reason"]["n"]
    assert reviewed_n >= 5
    expect(page.locator("#quality-reason")).to_contain_text(f"/{reviewed_n}")
    page.get_by_role("link", name="Afficher en français").click()
    page.goto(url + "/ui")
    expect(page.locator("h1")).to_contain_text("Vue d'ensemble")
    _shot(page, "overview-fr-1280")

    # Sign out: the session is gone, the pages ask for a key again.
    page.get_by_role("button", name="Se déconnecter").click()
    expect(page).to_have_url(url + "/ui/login?signed_out=1")
    page.goto(url + "/ui/calls")
    expect(page).to_have_url(url + "/ui/login?next=/ui/calls")
    context.close()
