"""The console's pages through the app (TestClient), on PostgreSQL and SQLite: the same
numbers as the REST API, filters, the CSV download, sign-in sessions and their cookies, CSRF,
scopes, the review form's answers, both languages. The browser test drives the same pages in
Chromium against the real processes (test_console_browser.py)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.auth.service import create_api_key, revoke_api_key
from app.auth.sessions import SignInRefused, current_session, sign_in
from app.config import Settings
from app.db.session import build_engine, build_sessionmaker, session_scope
from app.llm.model_files import DEFAULT_ADAPTER
from app.main import create_app
from app.registry import service as registry
from app.registry.gate import Guard, guard_figures
from schemas.taxonomy import load_taxonomy
from support.factories import gate_comparison, scored_result
from support.fakes import FakeTaskQueue

Store = Callable[..., list[str]]  # the store_calls fixture (tests/conftest.py)
CALLS = [
    "Client: ma box Livebox 6 ne s'allume plus [confidence=0.95] [reason=breakdown]",
    "Client: facture en double pour la Livebox 6 [confidence=0.5] [reason=billing]",
    "Customer: where is my Dyson V15 parcel [confidence=0.97] [reason=delivery]",
    "Customer: cancel my plan [invalid]",
]


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


def _analytics_totals(client: TestClient, since: str, until: str) -> dict[str, int]:
    items = client.get(
        "/v1/analytics/reasons", params={"bucket": "day", "since": since, "until": until}
    ).json()["items"]
    totals: dict[str, int] = {}
    for item in items:
        totals[item["reason"]] = totals.get(item["reason"], 0) + item["count"]
    return totals


def _legend(page: str) -> dict[str, int]:
    return {
        reason: int(count.replace(",", ""))
        for reason, count in re.findall(r'<strong data-reason="([^"]+)">([\d,]+)</strong>', page)
    }


def test_overview_counts_are_the_apis_and_link_to_their_calls(
    client: TestClient, store_calls: Store
) -> None:
    ids = store_calls(CALLS)
    page = client.get("/ui").text
    today = datetime.now(UTC).date()
    since = f"{today - timedelta(days=29)}T00:00:00Z"
    until = f"{today + timedelta(days=1)}T00:00:00Z"
    assert (
        _legend(page)
        == _analytics_totals(client, since, until)
        == {
            "breakdown": 1,
            "billing": 1,
            "delivery": 1,
        }
    )
    assert 'id="tile-failed"' in page and 'data-count="1"' in page  # the [invalid] call
    assert re.search(r'id="tile-review".*?data-count="(\d+)"', page, re.S).group(1) == "2"  # type: ignore[union-attr]
    # Each reason's count links to the calls behind it, and the list shows exactly them.
    link = re.search(r'href="(/ui/calls\?[^"]*reason=billing)"', page)
    assert link is not None
    listed = client.get(link.group(1).replace("&amp;", "&")).text
    assert re.findall(r'href="/ui/calls/([0-9a-f-]{36})"', listed) == [ids[1]]
    # The top products: the API's, each total linked to its calls.
    products = client.get("/v1/analytics/products", params={"since": since, "until": until}).json()
    shown = re.findall(r'data-product-total="(\d+)"', page)
    assert shown == [str(p["total"]) for p in products["items"][:10]] and shown


def test_the_calls_list_filters_paginates_and_downloads(
    client: TestClient, store_calls: Store
) -> None:
    ids = store_calls(CALLS)
    page = client.get("/ui/calls").text
    assert all(f"/ui/calls/{i}" in page for i in ids)
    # The review state and the status filters are the API's.
    waiting = client.get("/ui/calls", params={"review": "waiting"}).text
    api_waiting = client.get("/v1/extractions", params={"review": "waiting"}).json()["items"]
    assert {i["transcript_id"] for i in api_waiting} == {ids[1], ids[3]}
    assert all((f"/ui/calls/{i}" in waiting) == (i in (ids[1], ids[3])) for i in ids)
    failed = client.get("/ui/calls", params={"status": "failed"}).text
    assert f"/ui/calls/{ids[3]}" in failed and f"/ui/calls/{ids[0]}" not in failed
    # A bad value is said next to its field; the page still answers, unfiltered by it.
    bad = client.get("/ui/calls", params={"reason": "panne", "min_confidence": "2"})
    assert bad.status_code == 200
    assert "&#39;panne&#39; is not one of breakdown" in bad.text
    assert "&#39;2&#39; is not a number between 0 and 1" in bad.text
    # Keyset pages of 50: 60 calls make two pages, no call twice.
    more = store_calls([f"Client: appel {n} [confidence=0.99] [reason=other]" for n in range(56)])
    first = client.get("/ui/calls").text
    next_link = re.search(r'href="(/ui/calls\?[^"]*cursor=[^"]+)"', first)
    assert next_link is not None
    second = client.get(next_link.group(1).replace("&amp;", "&")).text
    seen = re.findall(r'href="/ui/calls/([0-9a-f-]{36})"', first + second)
    assert sorted(seen) == sorted(ids + more)
    # The CSV is the filter's calls, every one, with the answer that counts.
    response = client.get("/ui/calls.csv", params={"reason": "other"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 56 and {r["reason"] for r in rows} == {"other"}
    assert {r["transcript_id"] for r in rows} == set(more)
    # A bad filter is refused before any row, as a page.
    assert client.get("/ui/calls.csv", params={"status": "done"}).status_code == 422


def test_a_calls_page_shows_every_attempt_and_label(client: TestClient, store_calls: Store) -> None:
    [call_id] = store_calls(["Client: facture Livebox 6 [confidence=0.5] [reason=billing]"])
    put = client.put(
        f"/v1/transcripts/{call_id}/label",
        json={"reason": "breakdown", "product": "Livebox 6", "version": 0, "note": "panne"},
    )
    assert put.status_code == 200, put.text
    page = client.get(f"/ui/calls/{call_id}").text
    assert 'data-reason="breakdown"' in page  # the answer that counts: the label's
    assert "fake: fake-a" in page and "default-2026-11-29" in page  # the attempt's model, taxonomy
    assert re.search(r'<table class="list" id="labels">.*local', page, re.S)
    assert client.get("/ui/calls/00000000-0000-0000-0000-000000000000").status_code == 404


def test_reviewing_through_the_page(client: TestClient, store_calls: Store) -> None:
    ids = store_calls(
        [
            "Client: facture [confidence=0.3] [reason=billing]",
            "Client: livraison [confidence=0.4] [reason=delivery]",
        ]
    )
    page = client.get("/ui/review").text
    assert f'action="/ui/review/{ids[0]}"' in page  # the lowest confidence first
    token = _csrf(page)
    # Without the CSRF token: refused, nothing stored.
    refused = client.post(f"/ui/review/{ids[0]}", data={"reason": "billing", "version": "0"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert client.get(f"/v1/transcripts/{ids[0]}/labels").json()["items"] == []
    # A correction: stored, and the next call follows with what was changed.
    saved = client.post(
        f"/ui/review/{ids[0]}",
        data={"csrf_token": token, "reason": "breakdown", "product": "Livebox", "version": "0"},
    )
    assert saved.status_code == 200 and saved.url.path == "/ui/review"
    assert 'id="saved"' in saved.text and "<ins>" in saved.text
    assert f'action="/ui/review/{ids[1]}"' in saved.text
    [label] = client.get(f"/v1/transcripts/{ids[0]}/labels").json()["items"]
    assert (label["reason"], label["product"], label["labelled_by"]) == (
        "breakdown",
        "Livebox",
        "local",
    )
    # A stale version: the API's 409, shown on the form; nothing stored.
    stale = client.post(
        f"/ui/review/{ids[0]}",
        data={"csrf_token": token, "reason": "other", "version": "0", "back": "call"},
    )
    assert stale.status_code == 409
    assert 'id="refused"' in stale.text and "version 1" in stale.text
    # A reason outside the taxonomy: 422 on the form.
    wrong = client.post(
        f"/ui/review/{ids[1]}", data={"csrf_token": token, "reason": "panne", "version": "0"}
    )
    assert wrong.status_code == 422 and "panne" in wrong.text
    assert len(client.get(f"/v1/transcripts/{ids[0]}/labels").json()["items"]) == 1
    # Skipping goes past a call; at the end, the page says so.
    skipped = client.get("/ui/review?end=1").text
    assert 'id="queue-empty"' in skipped and "start-over" in skipped


def test_a_call_drawn_for_exploration_says_why_it_waits(
    client: TestClient, store_calls: Store
) -> None:
    [explored] = store_calls(
        ["Client: facture [confidence=0.99] [reason=billing]"], review={"explore_rate": 1.0}
    )
    page = client.get("/ui/review").text
    assert f'action="/ui/review/{explored}"' in page
    assert "drawn at random (to learn from)" in page
    assert "drawn at random (to learn from)" in client.get(f"/ui/calls/{explored}").text
    client.cookies.set("callx_lang", "fr", path="/ui")
    assert "tiré au hasard (pour l&#39;apprentissage)" in client.get("/ui/review").text


@pytest.fixture
def keyed(review_settings: Settings) -> Any:
    """The app with API keys required, and a key of each scope."""
    settings = review_settings.model_copy(
        update={"auth": review_settings.auth.model_copy(update={"required": True})}
    )
    engine = build_engine(settings)
    sessions = build_sessionmaker(engine)
    keys = {}
    with session_scope(sessions) as session:
        for scope in ("ingest", "read", "review", "admin"):
            keys[scope] = create_api_key(session, scope, f"{scope}-person")[1]  # type: ignore[arg-type]
    with TestClient(create_app(settings, queue=FakeTaskQueue())) as test_client:  # type: ignore[arg-type]
        yield test_client, keys, sessions
    engine.dispose()


def _sign_in(client: TestClient, key: str, next_: str = "/ui") -> Any:
    login = client.get(f"/ui/login?next={next_}")
    return client.post(
        "/ui/login",
        data={"api_key": key, "next": next_, "csrf_token": _csrf(login.text)},
        follow_redirects=False,
    )


def test_sign_in_opens_a_server_side_session(keyed: Any) -> None:
    client, keys, sessions = keyed
    first = client.get("/ui/calls", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/ui/login?next=/ui/calls"
    assert client.get("/").headers.get("location") is None  # followed to the sign-in page
    # The sign-in form has its own CSRF check (a double-submit cookie).
    login = client.get("/ui/login")
    no_token = client.post("/ui/login", data={"api_key": keys["read"]})
    assert no_token.status_code == 403
    # A wrong key, or one that may not read, is said on the form.
    wrong = client.post("/ui/login", data={"api_key": "cx_nope", "csrf_token": _csrf(login.text)})
    assert wrong.status_code == 401 and "invalid or revoked API key" in wrong.text
    ingest = _sign_in(client, keys["ingest"])
    assert ingest.status_code == 401 and "the console needs" in ingest.text
    # A read key: a session cookie (HttpOnly, SameSite, not the key), back where it was going.
    signed = _sign_in(client, keys["read"], "/ui/batches")
    assert signed.status_code == 303 and signed.headers["location"] == "/ui/batches"
    cookie = signed.headers["set-cookie"]
    assert "callx_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie and keys["read"] not in cookie and "Path=/ui" in cookie
    assert client.get("/ui/batches").status_code == 200
    # It sees the review queue but may not label.
    assert (
        "read-only" in client.get("/ui/review").text
        or "Nothing waits" in client.get("/ui/review").text
    )
    # Signing out needs the CSRF token, and ends the session for good.
    page = client.get("/ui").text
    assert client.post("/ui/logout").status_code == 403
    out = client.post("/ui/logout", data={"csrf_token": _csrf(page)}, follow_redirects=False)
    assert out.status_code == 303 and "callx_session=" in out.headers["set-cookie"]
    assert client.get("/ui", follow_redirects=False).status_code == 303


def test_a_revoked_key_or_an_expired_session_ends_at_once(keyed: Any) -> None:
    client, keys, sessions = keyed
    _sign_in(client, keys["review"])
    assert client.get("/ui", follow_redirects=False).status_code == 200
    now = datetime.now(UTC)
    with session_scope(sessions) as session:
        token = sign_in(session, keys["review"], now, timedelta(hours=1))
        assert current_session(session, token, now + timedelta(minutes=59)) is not None
        assert current_session(session, token, now + timedelta(hours=1)) is None  # expired
        with pytest.raises(SignInRefused, match="scope 'ingest'"):
            sign_in(session, keys["ingest"], now, timedelta(hours=1))
        from app.auth.service import find_api_key

        revoke_api_key(session, find_api_key(session, keys["review"]), now)  # type: ignore[arg-type]
        assert current_session(session, token, now) is None
    gone = client.get("/ui", follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"].endswith("&expired=1")


def test_cookies_are_secure_behind_https_and_next_stays_on_callx(keyed: Any) -> None:
    client, keys, _ = keyed
    secure = TestClient(client.app, base_url="https://callx.example")
    signed = _sign_in(secure, keys["read"], "https://evil.example/ui")
    assert signed.headers["location"] == "/ui"  # never another site
    assert "Secure" in signed.headers["set-cookie"]
    for target in ("//evil.example/ui", "/v1/extractions", "/ui\\@evil"):
        assert _sign_in(secure, keys["read"], target).headers["location"] == "/ui"


def test_a_read_key_cannot_label(keyed: Any, store_calls: Store) -> None:
    client, keys, _ = keyed
    client.headers["X-API-Key"] = keys["admin"]
    [call_id] = store_calls(["Client: facture [confidence=0.3] [reason=billing]"])
    del client.headers["X-API-Key"]
    _sign_in(client, keys["read"])
    page = client.get("/ui/review").text
    assert 'id="read-only"' in page and "<fieldset disabled>" in page
    refused = client.post(
        f"/ui/review/{call_id}", data={"csrf_token": _csrf(page), "reason": "other", "version": "0"}
    )
    assert refused.status_code == 403 and "scope &#39;read&#39;" in refused.text
    client.headers["X-API-Key"] = keys["admin"]
    assert client.get(f"/v1/transcripts/{call_id}/labels").json()["items"] == []


def test_french_from_the_browser_or_the_switch(client: TestClient, store_calls: Store) -> None:
    store_calls([f"Client: panne {n} [confidence=0.99] [reason=breakdown]" for n in range(3)])
    french = client.get("/ui", headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"}).text
    assert '<html lang="fr">' in french and "Vue d&#39;ensemble" in french
    english = client.get("/ui", headers={"Accept-Language": "de-DE,en;q=0.5"}).text
    assert '<html lang="en">' in english
    switched = client.get("/ui/lang/fr?next=/ui/calls", follow_redirects=False)
    assert (
        switched.headers["location"] == "/ui/calls"
        and "callx_lang=fr" in switched.headers["set-cookie"]
    )
    client.cookies.set("callx_lang", "fr", path="/ui")
    assert "<h1>Appels</h1>" in client.get("/ui/calls", headers={"Accept-Language": "en"}).text


def test_pages_need_nothing_from_another_site(client: TestClient, store_calls: Store) -> None:
    store_calls(CALLS)
    for path in ("/ui", "/ui/calls", "/ui/review", "/ui/batches", "/ui/models"):
        page = client.get(path).text
        for url in re.findall(r'(?:src|href)="([^"#]+)"', page):
            assert url.startswith("/"), f"{path} loads {url}"
        for asset in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page):
            assert client.get(asset).status_code == 200
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui"


HOSTILE = ["' OR 1=1 --", "'); DROP TABLE labels; --", "%", "<script>alert(1)</script>", "é" * 300]


def test_hostile_filter_values_are_refused_or_match_nothing(
    client: TestClient, store_calls: Store
) -> None:
    """Every filter of every page, given SQL or markup: a page (200 with the field's error, or
    a 4xx page), never a 5xx, never the value echoed unescaped, and the calls still there."""
    ids = store_calls(CALLS)
    filters = {
        "/ui": ("from", "to", "source", "bucket"),
        "/ui/calls": (
            "reason",
            "product",
            "source",
            "language",
            "from",
            "to",
            "status",
            "review",
            "min_confidence",
            "max_confidence",
            "since",
            "until",
            "batch_id",
            "cursor",
        ),
        "/ui/calls.csv": ("reason", "product", "status", "cursor"),
        "/ui/review": ("after", "saved", "end"),
        "/ui/batches": ("before",),
    }
    for path, names in filters.items():
        for name in names:
            for value in HOSTILE:
                response = client.get(path, params={name: value})
                assert response.status_code < 500, (path, name, value, response.text[:300])
                assert "<script>alert(1)</script>" not in response.text, (path, name)
    assert len(client.get("/v1/extractions").json()["items"]) == len(ids)


def test_every_overview_figure_links_to_as_many_calls(
    client: TestClient, store_calls: Store
) -> None:
    """The answered calls' tile and the period totals leave out the failed call (it has no
    answer), the accuracy tile lists the labelled audit calls, and the accuracy follows the
    source filter."""
    ids = store_calls(CALLS, review={"audit_rate": 1.0})  # every call in the audit sample
    store_calls([{"text": "Client: facture [confidence=0.99] [reason=billing]", "source": "web"}])
    for call_id, reason in ((ids[0], "breakdown"), (ids[1], "other")):
        put = client.put(f"/v1/transcripts/{call_id}/label", json={"reason": reason, "version": 0})
        assert put.status_code == 200, put.text
    page = client.get("/ui").text

    def listed(link: str) -> int:
        listing = client.get(link.replace("&amp;", "&")).text
        return len(re.findall(r'href="/ui/calls/[0-9a-f-]{36}"', listing))

    tile = re.search(r'id="tile-calls" href="([^"]+)".*?data-count="(\d+)"', page, re.S)
    assert tile is not None and listed(tile.group(1)) == int(tile.group(2)) == 4
    accuracy = re.search(r'id="tile-accuracy" href="([^"]+)"', page)
    assert accuracy is not None and listed(accuracy.group(1)) == 2
    assert "50.0%" in page and "1/2" in page  # one of the two labels agreed with the model
    web_only = client.get("/ui", params={"source": "web"}).text
    assert "no audit call reviewed yet" in web_only
    quality = client.get("/v1/quality", params={"source": "web"}).json()
    assert quality["audit"]["reason"]["n"] == 0 and quality["query"]["source"] == "web"


def test_dates_typed_win_and_ranges_stay_drawable(client: TestClient, store_calls: Store) -> None:
    store_calls(CALLS)
    today = datetime.now(UTC).date()
    # A link from the overview carries exact times; dates typed afterwards replace them.
    linked = client.get(
        "/ui/calls",
        params={"since": "2001-01-01T00:00:00Z", "until": "2001-01-02T00:00:00Z"},
    ).text
    assert "No call matches." in linked
    retyped = client.get(
        "/ui/calls",
        params={
            "since": "2001-01-01T00:00:00Z",
            "until": "2001-01-02T00:00:00Z",
            "from": str(today - timedelta(days=1)),
            "to": str(today),
        },
    ).text
    assert len(re.findall(r'href="/ui/calls/[0-9a-f-]{36}"', retyped)) == len(CALLS)
    assert 'name="since"' not in retyped  # not carried on to the next search
    # Dates outside 2000-2099 are refused by field, never a 500.
    for params in ({"to": "9999-12-31"}, {"from": "0001-01-01"}):
        for path in ("/ui", "/ui/calls"):
            response = client.get(path, params=params)
            assert response.status_code == 200 and 'id="filter-errors"' in response.text
    # Ten years per day would be 3,650 bars: shown per month instead, and said so.
    decade = client.get("/ui", params={"from": "2016-01-01", "to": "2025-12-31"}).text
    assert 'id="coarsened"' in decade and decade.count("<rect") <= 400


def test_the_csv_never_carries_a_formula(client: TestClient, store_calls: Store) -> None:
    formula = '=HYPERLINK("http://evil.example","x")'
    store_calls([{"external_id": formula, "text": "Client: panne [reason=breakdown]"}])
    rows = list(csv.DictReader(io.StringIO(client.get("/ui/calls.csv").text)))
    assert [row["external_id"] for row in rows] == ["'" + formula]  # text, not a formula
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())


def test_a_language_with_q0_is_not_chosen() -> None:
    from app.web.i18n import negotiate

    assert negotiate(None, "de, fr;q=0") == "en"
    assert negotiate(None, "de, fr;q=0.1") == "fr"
    assert negotiate("fr", "en") == "fr"


def test_the_models_page_names_a_guard_a_candidate_lost(
    client: TestClient, review_settings: Settings, tmp_path: Path
) -> None:
    candidate = tmp_path / "shop.gguf"
    candidate.write_bytes(DEFAULT_ADAPTER.read_bytes() + b"shop")
    gold = ["billing"] * 85
    ours = ["billing"] * 71 + ["other"] * 14
    guard = Guard.parse("data/calls/test.jsonl@default", load_taxonomy(None))
    lost = guard_figures(
        guard, scored_result("candidate", ours, gold), scored_result("promoted", gold[:], gold)
    )
    engine = build_engine(review_settings)
    with session_scope(build_sessionmaker(engine)) as session:
        shop = registry.register(session, review_settings, candidate, "shop", "t")
        comparison = gate_comparison(0.6, 0.4, guards=(lost,))
        promoted = registry.promoted(session, review_settings)
        registry.record_evaluation(session, shop, promoted, comparison, "t")
    engine.dispose()
    row = client.get("/ui/models").text.split("<td>shop")[1].split("</tr>")[0]
    assert '<span class="tag bad">forgets</span>' in row
    assert "guard data/calls/test.jsonl: 16.47 points lost, 2 allowed" in row
    client.cookies.set("callx_lang", "fr", path="/ui")
    french = client.get("/ui/models").text
    assert "garde data/calls/test.jsonl : 16,47 points perdus, 2 permis" in french


def test_the_models_page_says_which_list_an_adapter_is_promoted_for(
    client: TestClient, review_settings: Settings, tmp_path: Path
) -> None:
    candidate = tmp_path / "movers.gguf"
    candidate.write_bytes(DEFAULT_ADAPTER.read_bytes() + b"movers")
    engine = build_engine(review_settings)
    with session_scope(build_sessionmaker(engine)) as session:
        movers = registry.register(session, review_settings, candidate, "movers", "t")
        comparison = gate_comparison(0.6, 0.4, taxonomy_version="moving-2026-12")
        baseline = registry.promoted(session, review_settings, "moving-2026-12")
        registry.record_evaluation(session, movers, baseline, comparison, "t")
        registry.promote(session, review_settings, movers.id, "t", for_taxonomy="moving-2026-12")
    engine.dispose()
    row = client.get("/ui/models").text.split("<td>movers")[1].split("</tr>")[0]
    assert '<span class="tag ok promoted-for">promoted for moving-2026-12</span>' in row
    default_row = client.get("/ui/models").text.split("<td>callx-default")[1].split("</tr>")[0]
    assert "promoted for" not in default_row and ">promoted</span>" in default_row
    # The commands it names are code, not text in backticks (no worker runs in this test).
    page = client.get("/ui/models").text
    assert "with <code>callx models</code> (see" in page and "`" not in page
    assert "starts (<code>callx worker</code>)." in page
    client.cookies.set("callx_lang", "fr", path="/ui")
    assert "promu pour moving-2026-12" in client.get("/ui/models").text
