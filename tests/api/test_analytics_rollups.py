"""The analytics endpoints read rollups kept in step with the extractions: their answers must be
exactly what a direct count over the calls' answers gives, after new extractions, human labels
that correct them (a failed call's too, and a label corrected again), re-extractions that
change a call's reason or product (or make it fail) under a label or not, and for ranges that
start or end in the middle of a day. Real PostgreSQL; extractions stored by the real service
code, labels through the API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import results as results_db
from app.db import rollups as rollups_db
from app.db.session import build_engine, build_sessionmaker
from app.extraction.extractor import Extractor
from app.extraction.service import run_extraction
from app.extraction.store import ExtractionStore
from app.llm.fake import FakeBackend
from app.main import create_app
from support.fakes import FakeTaskQueue

START = datetime(2026, 9, 28, 21, 30, tzinfo=UTC)  # a Monday evening: days, weeks, months
PRODUCTS = ["Livebox 6", "LIVEBOX 6", "Fibre 500", "Dyson V15", "Galaxy S24"]
WORDS = ["en panne", "la facture", "comment configurer", "la livraison", "résilier", "bonjour"]


@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"required": False})}
    )


@pytest.fixture
def engine(app_settings: Settings, clean_db: None) -> Iterator[Engine]:
    engine = build_engine(app_settings)
    yield engine
    engine.dispose()


def _calls(n: int) -> list[dict[str, Any]]:
    calls = []
    for i in range(n):
        # Every 5 hours and 7 minutes: many days, several a day, some just before midnight.
        occurred_at = START + timedelta(minutes=307 * i)
        product = PRODUCTS[i % len(PRODUCTS)]
        calls.append(
            {
                "external_id": f"r-{i}",
                "source": ("crm", "web")[i % 3 == 0],
                "text": f"Client: ma {product} {WORDS[i % len(WORDS)]}, appel {i}.",
                "occurred_at": occurred_at.isoformat(),
            }
        )
    return calls


SLICE = (
    "AND (CAST(:source AS varchar) IS NULL OR source = :source) "
    "AND (CAST(:taxonomy AS varchar) IS NULL OR taxonomy_version = :taxonomy) "
)


def _direct_reasons(
    engine: Engine, bucket: str, since: Any, until: Any, where: dict[str, Any]
) -> list[Any]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT date_trunc(:bucket, occurred_at AT TIME ZONE 'UTC') AS b, answer_reason, "
                "count(*) FROM extractions WHERE is_current AND answer_reason IS NOT NULL "
                "AND (CAST(:since AS timestamptz) IS NULL OR occurred_at >= :since) "
                "AND (CAST(:until AS timestamptz) IS NULL OR occurred_at < :until) "
                f"{SLICE}GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            {"bucket": bucket, "since": since, "until": until, **where},
        )
        return [(b.replace(tzinfo=UTC), r, c) for b, r, c in rows]


def _direct_products(
    engine: Engine, reason: str | None, since: Any, until: Any, where: dict[str, Any]
) -> list[Any]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT answer_product_key, min(answer_product), count(*), answer_reason "
                "FROM extractions WHERE is_current AND answer_reason IS NOT NULL "
                "AND answer_product_key IS NOT NULL "
                "AND (CAST(:reason AS varchar) IS NULL OR answer_reason = :reason) "
                "AND (CAST(:since AS timestamptz) IS NULL OR occurred_at >= :since) "
                "AND (CAST(:until AS timestamptz) IS NULL OR occurred_at < :until) "
                f"{SLICE}GROUP BY GROUPING SETS "
                "((answer_product_key), (answer_product_key, answer_reason))"
            ),
            {"reason": reason, "since": since, "until": until, **where},
        ).all()
    totals = {key: (product, count) for key, product, count, code in rows if code is None}
    by_reason: dict[str, dict[str, int]] = {}
    for key, _, count, code in rows:
        if code is not None:
            by_reason.setdefault(key, {})[code] = count
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][1], kv[0]))[:20]
    return [
        {"product": product, "total": total, "by_reason": by_reason[key]}
        for key, (product, total) in ranked
    ]


def _api_reasons(
    client: TestClient, bucket: str, since: Any, until: Any, where: dict[str, Any]
) -> list[Any]:
    params = {"bucket": bucket, **_slice_params(where)}
    if since is not None:
        params["since"] = since.isoformat()
    if until is not None:
        params["until"] = until.isoformat()
    response = client.get("/v1/analytics/reasons", params=params)
    assert response.status_code == 200, response.text
    return [
        (datetime.fromisoformat(i["bucket"]), i["reason"], i["count"])
        for i in response.json()["items"]
    ]


def _slice_params(where: dict[str, Any]) -> dict[str, Any]:
    names = {"source": "source", "taxonomy": "taxonomy_version"}
    return {names[k]: v for k, v in where.items() if v is not None}


def _api_products(
    client: TestClient, reason: str | None, since: Any, until: Any, where: dict[str, Any]
) -> list[Any]:
    params: dict[str, Any] = {"limit": 20, **_slice_params(where)}
    for name, value in (("reason", reason), ("since", since), ("until", until)):
        if value is not None:
            params[name] = value if isinstance(value, str) else value.isoformat()
    response = client.get("/v1/analytics/products", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def _rollup_rows(engine: Engine) -> tuple[set[Any], set[Any], set[Any], set[Any]]:
    with engine.connect() as connection:
        days = connection.execute(
            text(
                "SELECT day, source, taxonomy_version, reason, calls FROM reason_day_counts "
                "WHERE calls <> 0"
            )
        )
        products = connection.execute(
            text(
                "SELECT product_key, product, source, taxonomy_version, reason, calls "
                "FROM product_reason_counts "
                "WHERE calls <> 0"
            )
        )
        product_days = connection.execute(
            text(
                "SELECT day, product_key, product, source, taxonomy_version, reason, calls "
                "FROM product_day_counts "
                "WHERE calls <> 0"
            )
        )
        product_months = connection.execute(
            text(
                "SELECT month, product_key, product, source, taxonomy_version, reason, calls "
                "FROM product_month_counts "
                "WHERE calls <> 0"
            )
        )
        return set(days), set(products), set(product_days), set(product_months)


def _assert_exact(client: TestClient, engine: Engine) -> None:
    end = START + timedelta(days=60)
    ranges = [
        (None, None),
        (START + timedelta(days=3, hours=5, minutes=11), end - timedelta(days=9, hours=13)),
        (START + timedelta(hours=2, minutes=30), None),  # from midnight, UTC
        (None, START + timedelta(days=20, hours=7)),
        (START + timedelta(days=10, hours=4), START + timedelta(days=10, hours=20)),  # one day
        (START + timedelta(days=10, hours=20), START + timedelta(days=11, hours=6)),  # two parts
        (START + timedelta(days=12, hours=2, minutes=30), START + timedelta(days=13)),
        # A whole month (October, from product_month_counts) with days and parts around it.
        (START + timedelta(hours=2, minutes=30), START + timedelta(days=35, hours=11)),
    ]
    # Every call, one source's, one taxonomy version's (re-extracted calls have another).
    slices = [
        {"source": None, "taxonomy": None},
        {"source": "web", "taxonomy": None},
        {"source": None, "taxonomy": "t"},
    ]
    for where in slices:
        for since, until in ranges:
            for bucket in ("day", "week", "month"):
                assert _api_reasons(client, bucket, since, until, where) == _direct_reasons(
                    engine, bucket, since, until, where
                ), (bucket, since, until, where)
        for reason in (None, "breakdown", "billing", "other"):
            for since, until in ranges:
                assert _api_products(client, reason, since, until, where) == _direct_products(
                    engine, reason, since, until, where
                ), (reason, since, until, where)
    # The rollups hold exactly what rebuilding them from the extractions gives.
    kept = _rollup_rows(engine)
    with Session(engine) as session, session.begin():
        rollups_db.rebuild_rollups(session)
    assert _rollup_rows(engine) == kept


def test_rollup_answers_equal_direct_counts(
    app_settings: Settings, engine: Engine, clean_db: None
) -> None:
    queue = FakeTaskQueue()
    with TestClient(create_app(app_settings, queue=queue)) as client:  # type: ignore[arg-type]
        created = client.post("/v1/batches", json=_calls(240))
        assert created.status_code == 202 and created.json()["accepted"] == 240
        sessions = build_sessionmaker(engine)
        store = ExtractionStore(sessions)
        extractor = Extractor.from_settings(app_settings, backend=FakeBackend())
        # From many threads at once, as a worker runs them: their writes share transactions.
        with ThreadPoolExecutor(32) as pool:
            outcomes = list(
                pool.map(
                    lambda i: run_extraction(
                        store,
                        uuid.UUID(i),
                        extractor,
                        lease_s=60,
                        taxonomy_version=extractor.taxonomy.version,
                    ),
                    [i for i, _ in queue.sent],
                )
            )
        assert outcomes == ["succeeded"] * 240
        _assert_exact(client, engine)

        # Labels: 60 calls corrected (another reason, another product or none), 20 of them
        # corrected again; below, some of them are re-extracted: the label stays their answer.
        labelled = [i for i, _ in queue.sent][::4]
        for n, transcript_id in enumerate(labelled):
            reasons = ("other", "billing", "usage_help")
            products = ("Freebox Pop", None, "LIVEBOX 6", "Galaxy S24")
            for version in range(1 + (n % 3 == 0)):
                response = client.put(
                    f"/v1/transcripts/{transcript_id}/label",
                    json={
                        "reason": reasons[(n + version) % 3],
                        "product": products[(n + version) % 4],
                        "version": version,
                    },
                )
                assert response.status_code == 200, response.text
        _assert_exact(client, engine)

        # Re-extractions: another reason and product, a failure, a success again, the same.
        with engine.connect() as connection:
            current = connection.execute(
                text(
                    "SELECT transcript_id, occurred_at, source FROM extractions WHERE is_current "
                    "ORDER BY occurred_at LIMIT 40"
                )
            ).all()
        for n, (transcript_id, occurred_at, source) in enumerate(current):
            with sessions() as session, session.begin():
                for attempt in range(1 + n % 3):
                    failed = (n + attempt) % 4 == 1
                    product = None if failed else PRODUCTS[(n + attempt + 2) % len(PRODUCTS)]
                    results_db.add_current_extractions(
                        session,
                        [
                            dict(
                                transcript_id=transcript_id,
                                status="failed" if failed else "succeeded",
                                occurred_at=occurred_at,
                                source=source,
                                product=product,
                                product_key=None if product is None else product.lower(),
                                reason=None if failed else ("cancellation", "delivery")[n % 2],
                                backend="test",
                                model="test",
                                prompt_version="v",
                                taxonomy_version="t",
                                latency_ms=1,
                                attempts=1,
                                truncated=False,
                                id=uuid.uuid4(),
                                confidence=None,
                                prompt_tokens=None,
                                completion_tokens=None,
                                raw_answer=None,
                                error=None,
                                error_kind=None,
                            )
                        ],
                    )
        # And the usual path again: back to queued, extracted by the worker's code.
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE transcripts SET status = 'queued' WHERE id IN "
                    "(SELECT transcript_id FROM extractions WHERE is_current "
                    "ORDER BY occurred_at DESC LIMIT 10)"
                )
            )
            redo = connection.execute(
                text("SELECT id FROM transcripts WHERE status = 'queued'")
            ).scalars()
            redo_ids = list(redo)
        assert [
            run_extraction(
                store, i, extractor, lease_s=60, taxonomy_version=extractor.taxonomy.version
            )
            for i in redo_ids
        ] == ["succeeded"] * 10
        _assert_exact(client, engine)

        # TRUNCATE extractions (as the tests' clean-up does) empties the rollups too.
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE extractions, transcripts, batches CASCADE"))
        assert _rollup_rows(engine) == (set(), set(), set(), set())
        assert client.get("/v1/analytics/reasons").json()["items"] == []
        assert client.get("/v1/analytics/products").json()["items"] == []
