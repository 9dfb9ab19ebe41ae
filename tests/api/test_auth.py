"""API keys on real PostgreSQL: scopes per endpoint, revocation, hashing at rest, the
`callx keys` commands and `callx serve`'s choice of requiring keys or not."""

from __future__ import annotations

import hashlib
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.api.deps import INVALID_KEY, MISSING_KEY
from app.auth.policy import OpenApiRefusedError, decide_auth, is_loopback
from app.auth.service import create_api_key, find_api_key, revoke_api_key
from app.config import AuthSettings, Settings
from app.db.session import build_engine, build_sessionmaker, session_scope
from app.main import create_app
from support.env import callx_command, process_env
from support.fakes import FakeTaskQueue
from support.services import CallxProcess, free_port

KEY_FORMAT = re.compile(r"^cx_[0-9a-f]{8}_[A-Za-z0-9_-]{43,}$")


@pytest.fixture
def auth_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth": AuthSettings(required=True)})


@pytest.fixture
def client(auth_settings: Settings, clean_db: None) -> Iterator[TestClient]:
    app = create_app(auth_settings, queue=FakeTaskQueue())  # type: ignore[arg-type]
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def new_key(auth_settings: Settings, clean_db: None) -> Iterator[Callable[..., str]]:
    """Create a key straight in the database; returns the plaintext key."""
    engine = build_engine(auth_settings)
    sessions = build_sessionmaker(engine)

    def make(scope: str, name: str | None = None) -> str:
        with session_scope(sessions) as session:
            _, plaintext = create_api_key(session, scope, name)  # type: ignore[arg-type]
        return plaintext

    yield make
    engine.dispose()


def revoke(settings: Settings, key: str) -> None:
    engine = build_engine(settings)
    with session_scope(build_sessionmaker(engine)) as session:
        found = find_api_key(session, key)
        assert found is not None
        revoke_api_key(session, found, found.created_at)
    engine.dispose()


def api_key_rows(database_url: str) -> list[dict]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(text("SELECT * FROM api_keys"))]
    engine.dispose()
    return rows


def with_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


INGEST_CALLS = [
    ("POST", "/v1/transcripts", {"text": "Client: ma box est en panne"}),
    ("POST", "/v1/batches", [{"text": "Client: facture trop élevée"}]),
]
READ_CALLS = [
    ("GET", "/v1/transcripts?external_id=nope", None),
    ("GET", f"/v1/transcripts/{uuid.uuid4()}", None),
    ("GET", f"/v1/batches/{uuid.uuid4()}", None),
    ("GET", "/v1/extractions", None),
    ("GET", "/v1/analytics/reasons", None),
    ("GET", "/v1/analytics/products", None),
    ("GET", f"/v1/transcripts/{uuid.uuid4()}/labels", None),
    ("GET", "/v1/quality", None),
]
REVIEW_CALLS = [
    ("GET", "/v1/review", None),
    ("PUT", f"/v1/transcripts/{uuid.uuid4()}/label", {"reason": "billing"}),
]


def call(
    client: TestClient, method: str, path: str, body: object, **kwargs: object
) -> httpx.Response:
    return client.request(method, path, json=body, **kwargs)  # type: ignore[arg-type]


# ---- enforcement --------------------------------------------------------------------------


def problem(detail: str, kind: str) -> dict[str, object]:
    """The error body of a refused key: what, and where (the key's header)."""
    where = ["header", "X-API-Key"]
    return {"detail": detail, "errors": [{"loc": where, "msg": detail, "type": kind}]}


def test_health_and_docs_stay_open(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz", params={"workers": "false"}).status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), INGEST_CALLS + READ_CALLS + REVIEW_CALLS)
def test_without_a_key_every_v1_route_is_a_401(
    client: TestClient, method: str, path: str, body: object
) -> None:
    response = call(client, method, path, body)
    assert response.status_code == 401
    assert response.json() == problem(MISSING_KEY, "unauthorized")
    # Another Authorization scheme is not a key either.
    basic = call(client, method, path, body, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401 and basic.json()["detail"] == MISSING_KEY


def test_unknown_malformed_and_revoked_keys_are_a_401(
    client: TestClient, new_key: Callable[..., str], auth_settings: Settings
) -> None:
    key = new_key("read")
    assert client.get("/v1/extractions", headers=with_key(key)).status_code == 200
    key_id = key.split("_")[1]
    for wrong in (
        "nonsense",
        "cx_",
        f"cx_{key_id}_",
        f"cx_{key_id}_{'A' * 43}",  # right id, wrong secret
        "cx_00000000_" + key.split("_", 2)[2],  # right secret, unknown id
        key[:-1],
    ):
        response = client.get("/v1/extractions", headers=with_key(wrong))
        assert response.status_code == 401, wrong
        assert response.json() == problem(INVALID_KEY, "unauthorized")
    revoke(auth_settings, key)
    for headers in (with_key(key), {"Authorization": f"Bearer {key}"}):
        response = client.get("/v1/extractions", headers=headers)
        assert response.status_code == 401 and response.json()["detail"] == INVALID_KEY


@pytest.mark.parametrize(("method", "path", "body"), INGEST_CALLS)
def test_a_read_key_cannot_ingest(
    client: TestClient,
    new_key: Callable[..., str],
    auth_settings: Settings,
    method: str,
    path: str,
    body: object,
) -> None:
    response = call(client, method, path, body, headers=with_key(new_key("read")))
    assert response.status_code == 403
    detail = "this key has scope 'read'; this endpoint needs 'ingest'"
    assert response.json() == problem(detail, "forbidden")
    engine = create_engine(auth_settings.database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM transcripts")).scalar_one() == 0
    engine.dispose()


@pytest.mark.parametrize(("method", "path", "body"), READ_CALLS)
def test_an_ingest_key_cannot_read(
    client: TestClient, new_key: Callable[..., str], method: str, path: str, body: object
) -> None:
    response = call(client, method, path, body, headers=with_key(new_key("ingest")))
    assert response.status_code == 403
    detail = "this key has scope 'ingest'; this endpoint needs 'read'"
    assert response.json() == problem(detail, "forbidden")


def test_each_scope_does_its_job_and_admin_does_both(
    client: TestClient, new_key: Callable[..., str]
) -> None:
    ingest, read, admin = new_key("ingest"), new_key("read"), new_key("admin")
    for submitter, reader in ((ingest, read), (admin, admin)):
        marker = uuid.uuid4().hex
        created = client.post(
            "/v1/transcripts",
            json={"text": f"Client: panne {marker}", "external_id": marker},
            headers=with_key(submitter),
        )
        assert created.status_code == 202, created.text
        batch = client.post(
            "/v1/batches", json=[{"text": f"Client: facture {marker}"}], headers=with_key(submitter)
        )
        assert batch.status_code == 202, batch.text
        reads = [
            f"/v1/transcripts/{created.json()['id']}",
            f"/v1/transcripts?external_id={marker}",
            f"/v1/batches/{batch.json()['id']}",
            "/v1/extractions",
            "/v1/analytics/reasons",
            "/v1/analytics/products",
        ]
        for path in reads:
            assert client.get(path, headers=with_key(reader)).status_code == 200, path
    # Authorization: Bearer works as well as X-API-Key.
    bearer = client.get("/v1/extractions", headers={"Authorization": f"Bearer {read}"})
    assert bearer.status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), REVIEW_CALLS)
def test_only_review_and_admin_keys_review(
    client: TestClient, new_key: Callable[..., str], method: str, path: str, body: object
) -> None:
    for scope in ("ingest", "read"):
        refused = call(client, method, path, body, headers=with_key(new_key(scope)))
        assert refused.status_code == 403, (scope, refused.text)
        detail = f"this key has scope {scope!r}; this endpoint needs 'review'"
        assert refused.json() == problem(detail, "forbidden")
    for scope in ("review", "admin"):
        allowed = call(client, method, path, body, headers=with_key(new_key(scope)))
        # Past the key check: the queue (200) or the unknown call (404).
        assert allowed.status_code in (200, 404), (scope, allowed.text)
        assert allowed.status_code == (200 if method == "GET" else 404)


def test_a_review_key_reads_but_does_not_ingest(
    client: TestClient, new_key: Callable[..., str]
) -> None:
    reviewer = new_key("review", "alice")
    for path in ("/v1/extractions", "/v1/analytics/reasons", "/v1/quality"):
        assert client.get(path, headers=with_key(reviewer)).status_code == 200, path
    refused = client.post("/v1/transcripts", json={"text": "x"}, headers=with_key(reviewer))
    assert refused.status_code == 403


def test_the_key_is_stored_hashed_and_shown_once(
    client: TestClient, new_key: Callable[..., str], auth_settings: Settings
) -> None:
    key = new_key("ingest", "crm-sync")
    assert KEY_FORMAT.match(key)
    _, key_id, secret = key.split("_", 2)
    (row,) = api_key_rows(auth_settings.database_url)
    assert row["id"] == key_id and row["scope"] == "ingest" and row["name"] == "crm-sync"
    assert row["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    stored = " ".join(str(value) for value in row.values())
    assert secret not in stored and key not in stored
    assert row["revoked_at"] is None and row["last_used_at"] is None
    client.post("/v1/transcripts", json={"text": "Client: bonjour"}, headers=with_key(key))
    (row,) = api_key_rows(auth_settings.database_url)
    assert row["last_used_at"] is not None


def test_openapi_documents_the_key_header(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKey"]["description"],
    }
    assert schemes["BearerApiKey"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/"):
                assert {"ApiKey": []} in operation.get("security", []), (method, path)
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
            else:
                assert "security" not in operation, (method, path)


# ---- when keys are required ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("required", "host", "expected"),
    [
        ("auto", "127.0.0.1", False),
        ("auto", "::1", False),
        ("auto", "[::1]", False),
        ("auto", "localhost", False),
        ("auto", "127.0.0.2", False),
        ("auto", "0.0.0.0", True),
        ("auto", "::", True),
        ("auto", "10.0.0.5", True),
        ("auto", "api.example.com", True),
        ("auto", None, True),  # not started by `callx serve`: nothing says it is local only
        (True, "127.0.0.1", True),
        (False, "127.0.0.1", False),
        (False, None, False),
    ],
)
def test_which_hosts_need_keys(required: object, host: str | None, expected: bool) -> None:
    decision = decide_auth(AuthSettings(required=required), host)  # type: ignore[arg-type]
    assert decision.required is expected
    assert ("API keys required" in decision.message) is expected


def test_keyless_on_a_public_host_needs_allow_open() -> None:
    with pytest.raises(OpenApiRefusedError, match="CALLX_AUTH__ALLOW_OPEN=true"):
        decide_auth(AuthSettings(required=False), "0.0.0.0")
    decision = decide_auth(AuthSettings(required=False, allow_open=True), "0.0.0.0")
    assert decision.required is False and "open to anyone who can reach 0.0.0.0" in decision.message
    assert not is_loopback("") and is_loopback("LOCALHOST")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", "auto"), ("AUTO", "auto"), ("true", True), ("1", True), ("false", False)],
)
def test_the_setting_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: object
) -> None:
    monkeypatch.setenv("CALLX_AUTH__REQUIRED", value)
    assert Settings().auth.required == expected


def test_a_nonsensical_setting_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLX_AUTH__REQUIRED", "sometimes")
    with pytest.raises(ValueError, match="auth.required"):
        Settings()


# ---- the real commands --------------------------------------------------------------------


def run_callx(settings: Settings, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return callx_command(args, process_env(settings, **extra_env), timeout=120)


def test_callx_keys_create_list_revoke(client: TestClient, auth_settings: Settings) -> None:
    created = run_callx(auth_settings, "keys", "create", "--scope", "ingest", "--name", "crm")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert KEY_FORMAT.match(key), created.stdout
    assert "shown only this once" in created.stderr and key not in created.stderr
    _, key_id, secret = key.split("_", 2)

    listed = run_callx(auth_settings, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    (line,) = [li for li in listed.stdout.splitlines() if li.startswith(key_id)]
    assert line.split()[:3] == [key_id, "crm", "ingest"] and line.split()[-1] == "-"
    assert secret not in listed.stdout + listed.stderr

    submitted = client.post(
        "/v1/transcripts", json={"text": "Client: bonjour"}, headers=with_key(key)
    )
    assert submitted.status_code == 202
    assert client.get("/v1/extractions", headers=with_key(key)).status_code == 403

    bad_scope = run_callx(auth_settings, "keys", "create", "--scope", "root")
    assert bad_scope.returncode == 2 and "root" in bad_scope.stderr

    revoked = run_callx(auth_settings, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked API key {key_id}" in revoked.stderr
    refused = client.post("/v1/transcripts", json={"text": "Client: encore"}, headers=with_key(key))
    assert refused.status_code == 401 and refused.json()["detail"] == INVALID_KEY

    again = run_callx(auth_settings, "keys", "revoke", key)  # the whole key works too
    assert again.returncode == 0 and "already revoked" in again.stderr
    assert secret not in again.stderr
    (line,) = [
        li
        for li in run_callx(auth_settings, "keys", "list").stdout.splitlines()
        if li.startswith(key_id)
    ]
    assert line.split()[-1] != "-"  # the revocation time
    unknown = run_callx(auth_settings, "keys", "revoke", "ffffffff")
    assert unknown.returncode == 1 and "no API key" in unknown.stderr


def test_serve_refuses_to_run_keyless_on_all_interfaces(settings: Settings) -> None:
    args = ["serve", "--host", "0.0.0.0", "--port", str(free_port()), "--no-worker", "--no-migrate"]
    result = run_callx(settings, *args, CALLX_AUTH__REQUIRED="false")
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "refusing to serve without API keys on 0.0.0.0" in message
    assert "CALLX_AUTH__ALLOW_OPEN=true" in message and "Traceback" not in result.stderr


def test_serve_says_whether_keys_are_required(
    start_callx: Callable[..., CallxProcess],
    settings: Settings,
    clean_db: None,
    new_key: Callable[..., str],
) -> None:
    public, local = free_port(), free_port()
    common = ["--no-worker", "--no-migrate"]
    exposed = start_callx(
        ["serve", "--host", "0.0.0.0", "--port", str(public), *common], process_env(settings)
    )
    embedded = start_callx(["serve", "--port", str(local), *common], process_env(settings))
    exposed.wait_http(f"http://127.0.0.1:{public}/healthz")
    embedded.wait_http(f"http://127.0.0.1:{local}/healthz")

    assert "API keys required" in exposed.log()
    assert httpx.get(f"http://127.0.0.1:{public}/v1/extractions").status_code == 401
    key = new_key("read")
    answer = httpx.get(f"http://127.0.0.1:{public}/v1/extractions", headers=with_key(key))
    assert answer.status_code == 200

    assert (
        "no API keys: open to anyone who can reach 127.0.0.1 (embedded default); "
        "set CALLX_AUTH__REQUIRED=true to require them"
    ) in " ".join(embedded.log().split())
    assert httpx.get(f"http://127.0.0.1:{local}/v1/extractions").status_code == 200


def test_a_label_records_the_name_of_the_reviewers_key(
    client: TestClient, new_key: Callable[..., str], auth_settings: Settings
) -> None:
    from support.factories import extract_stored

    created = client.post(
        "/v1/transcripts",
        json={"text": "Client: ma box est en panne"},
        headers=with_key(new_key("ingest")),
    )
    transcript_id = created.json()["id"]
    assert extract_stored(auth_settings, [transcript_id]) == ["succeeded"]
    reviewer = new_key("review", "alice")
    put = client.put(
        f"/v1/transcripts/{transcript_id}/label",
        json={"reason": "billing"},
        headers=with_key(reviewer),
    )
    assert put.status_code == 200, put.text
    assert put.json()["labelled_by"] == "alice"
    unnamed = new_key("admin")
    again = client.put(
        f"/v1/transcripts/{transcript_id}/label",
        json={"reason": "other", "version": 1},
        headers=with_key(unnamed),
    )
    assert again.json()["labelled_by"] == unnamed.split("_")[1]  # the key's id
