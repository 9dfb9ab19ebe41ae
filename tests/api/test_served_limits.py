"""The limits and the logs of the real server: `callx serve` as a subprocess (uvicorn, its own
access log) on PostgreSQL and Redis."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from app.auth.service import create_api_key
from app.config import Settings
from app.db.session import build_engine, build_sessionmaker, session_scope
from support.env import process_env
from support.services import CallxProcess, free_port

MAX_BODY = 65536


@dataclass
class Served:
    url: str
    port: int
    process: CallxProcess
    admin_key: str


@pytest.fixture
def served(
    start_callx: Callable[..., CallxProcess], settings: Settings, clean_db: None, clean_broker: None
) -> Iterator[Served]:
    """`callx serve` with API keys required (an admin key made) and a 64 KiB body limit."""
    engine = build_engine(settings)
    with session_scope(build_sessionmaker(engine)) as session:
        _, admin_key = create_api_key(session, "admin", "limits-test")
    engine.dispose()
    port = free_port()
    env = process_env(
        settings, CALLX_AUTH__REQUIRED="true", CALLX_API__MAX_BODY_BYTES=str(MAX_BODY)
    )
    api = start_callx(["serve", "--port", str(port), "--no-worker", "--no-migrate"], env, "api")
    url = f"http://127.0.0.1:{port}"
    api.wait_http(url + "/healthz")
    yield Served(url, port, api, admin_key)


def raw_response_head(port: int, request_head: bytes, body_start: bytes) -> bytes:
    """Send a request's head and the start of its body, then read what the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request_head + body_start)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_200_mb_body_is_answered_413_without_being_read(served: Served) -> None:
    declared = 200 * 1024 * 1024
    head = (
        b"POST /v1/transcripts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n" + f"Content-Length: {declared}\r\n\r\n".encode()
    )
    # 1 KiB of the 200 MiB sent: the answer comes anyway, so nothing waited for the rest.
    answer = raw_response_head(served.port, head, b'{"text": "' + b"x" * 1024)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def test_a_chunked_body_over_the_limit_is_a_413_on_every_endpoint(served: Served) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(4 * MAX_BODY // 8192):
            yield b"x" * 8192

    for path in ("/v1/transcripts", "/v1/batches"):
        response = httpx.post(
            served.url + path,
            content=body(),
            headers={"content-type": "application/json", "x-api-key": served.admin_key},
        )
        assert response.status_code == 413, (path, response.text)
        assert response.json()["errors"][0]["type"] == "too_large"


def test_an_api_key_is_never_logged_wherever_it_was_put(served: Served) -> None:
    key_id = "0123abcd"
    secret = secrets.token_urlsafe(32)
    key = f"cx_{key_id}_{secret}"
    answers = [
        httpx.get(served.url + "/v1/extractions", params={"api_key": key}),
        httpx.get(served.url + "/v1/extractions", params={"reason": "breakdown", "key": key}),
        httpx.get(served.url + f"/v1/transcripts/{key}"),
        httpx.get(served.url + f"/v1/transcripts?{key}"),
        # A live key in the query is refused too (keys go in a header), and not logged either.
        httpx.get(served.url + "/v1/extractions", params={"api_key": served.admin_key}),
    ]
    assert [a.status_code for a in answers] == [401] * 5
    assert all(a.json()["errors"] for a in answers)
    in_header = httpx.get(served.url + "/v1/extractions", headers={"x-api-key": served.admin_key})
    assert in_header.status_code == 200
    served.process.stop()  # every line written
    log = served.process.log()
    for leaked in (secret, served.admin_key.split("_", 2)[2]):
        assert leaked not in log
        assert leaked[:12] not in log
    # The requests are in the access log, the key by its public id only.
    assert "GET /v1/extractions?api_key=... HTTP/1.1" in log
    assert "GET /v1/extractions?reason=...&key=... HTTP/1.1" in log
    assert f"GET /v1/transcripts/cx_{key_id}_[redacted] HTTP/1.1" in log
    assert f"GET /v1/transcripts?cx_{key_id}_[redacted] HTTP/1.1" in log
