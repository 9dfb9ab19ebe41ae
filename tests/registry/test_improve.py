"""`callx improve` end to end on a SQLite deployment: labels exported, a candidate fine-tuned
(one step) from the promoted adapter, registered and measured against it with the real model,
the gate's verdict stored with a guard's figures; with --no-promote the promoted adapter stays."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import registry as registry_db
from app.db.migrate import upgrade
from app.db.session import build_engine, build_sessionmaker, session_scope
from app.llm.fake import FakeBackend
from app.llm.model_files import DEFAULT_ADAPTER
from app.main import create_app
from app.registry import service
from support.env import CACHE_DIR
from support.factories import adapter_variant, extract_stored
from support.fakes import FakeTaskQueue

pytestmark = pytest.mark.model
CALLX = str(Path(".venv/bin/callx").resolve())


def _labelled_deployment(
    tmp_path: Path, calls: str, n: int, taxonomy_path: Path | None = None
) -> tuple[Settings, str]:
    """A SQLite deployment whose first `n` calls of the file are extracted (FakeBackend) and
    labelled by a person with the file's answers: what `callx improve` exports."""
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'callx.sqlite3'}"
    data.mkdir()
    upgrade(url)
    extraction: dict[str, Any] = {"backend": "fake"}
    if taxonomy_path is not None:
        extraction["taxonomy_path"] = taxonomy_path
    settings = Settings(
        data_dir=data,
        cache_dir=CACHE_DIR,
        database={"url": url},
        extraction=extraction,
        auth={"required": False},
        review={"audit_rate": 0.0},
    )
    records = [json.loads(line) for line in Path(calls).read_text("utf-8").splitlines()][:n]
    with TestClient(create_app(settings, queue=FakeTaskQueue())) as client:  # type: ignore[arg-type]
        created = client.post(
            "/v1/batches", json=[{"text": r["transcript"], "external_id": r["id"]} for r in records]
        )
        ids = [str(i) for i in created.json()["transcript_ids"]]
        extract_stored(settings, ids, backend=FakeBackend(scored=True))
        for call_id, record in zip(ids, records, strict=True):
            label = {"reason": record["reason"], "product": record["product"], "version": 0}
            assert client.put(f"/v1/transcripts/{call_id}/label", json=label).status_code == 200
    return settings, url


def test_improve_trains_measures_and_keeps_the_gate(tmp_path: Path) -> None:
    settings, url = _labelled_deployment(tmp_path, "data/calls/train.jsonl", 30)
    data = settings.data_dir
    gate = tmp_path / "gate.jsonl"
    gate.write_text(
        "".join(Path("data/calls/test.jsonl").read_text("utf-8").splitlines(True)[:6]), "utf-8"
    )
    guard = tmp_path / "guard.jsonl"  # another list's requests it must not forget
    guard.write_text(
        "".join(Path("data/intents8/dev.jsonl").read_text("utf-8").splitlines(True)[:3]), "utf-8"
    )
    env = {
        **os.environ,
        "CALLX_DATA_DIR": str(data),
        "CALLX_CACHE_DIR": str(CACHE_DIR),
        "CALLX_DATABASE__URL": url,
    }
    done = subprocess.run(
        [
            CALLX,
            "improve",
            "--output",
            str(tmp_path / "round"),
            "--max-steps",
            "1",
            "--test",
            str(gate),
            "--guard",
            f"{guard}@intents8",
            "--no-promote",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1/4 exported" in done.stderr and "3/4 candidate" in done.stderr
    assert "4/4 kept the promoted adapter (--no-promote)" in done.stderr
    assert f"3/4 guard {guard} (3 calls, intents8-" in done.stderr
    engine = build_engine(settings)
    with session_scope(build_sessionmaker(engine)) as session:
        listed = service.list_adapters(session, settings)
        assert [a.adapter.name for a in listed][0] == "callx-default" and listed[0].promoted
        candidate = listed[-1]
        assert candidate.adapter.name.startswith("candidate-") and not candidate.promoted
        assert candidate.evaluation is not None and candidate.evaluation.calls == 6
        assert [g["calls"] for g in candidate.evaluation.guards] == [3]
        card = candidate.adapter.card or {}
        assert card["init_adapter"]["file"].endswith("callx-default.gguf")  # from the promoted
    engine.dispose()


def test_improve_for_a_list_starts_from_and_is_gated_against_that_lists_adapter(
    tmp_path: Path,
) -> None:
    """A moving company's own list with an adapter promoted for it alone: `improve --for-list`
    trains from that adapter and measures the candidate against it, not the registry's."""
    from support.factories import gate_comparison

    moving_yaml = Path("data/flywheel/moving.yaml").resolve()
    settings, url = _labelled_deployment(
        tmp_path, "data/flywheel/moving-train.jsonl", 20, moving_yaml
    )
    data = settings.data_dir
    movers = adapter_variant(tmp_path, "movers-v1", b"movers")  # its weights, another file
    movers.with_suffix(".json").write_text(
        DEFAULT_ADAPTER.with_suffix(".json").read_text("utf-8"), "utf-8"
    )
    engine = build_engine(settings)
    with session_scope(build_sessionmaker(engine)) as session:
        service.ensure_default(session, settings)
        own = service.register(session, settings, movers, "movers-v1", "t")
        own_id = own.id
    with session_scope(build_sessionmaker(engine)) as session:
        service.record_evaluation(
            session,
            service.get_adapter(session, own_id),
            service.promoted(session, settings, "moving-2026-12"),
            gate_comparison(0.6, 0.4, taxonomy_version="moving-2026-12"),
            "t",
        )
        service.promote(session, settings, own_id, "t", for_taxonomy="moving-2026-12")
    gate = tmp_path / "gate.jsonl"
    gate.write_text(
        "".join(Path("data/flywheel/moving-test.jsonl").read_text("utf-8").splitlines(True)[:3]),
        "utf-8",
    )
    env = {
        **os.environ,
        "CALLX_DATA_DIR": str(data),
        "CALLX_CACHE_DIR": str(CACHE_DIR),
        "CALLX_DATABASE__URL": url,
        "CALLX_EXTRACTION__TAXONOMY_PATH": str(moving_yaml),
    }
    # Without --for-list the round would promote an adapter this list's workers never run.
    refused = subprocess.run(
        [CALLX, "improve", "--output", str(tmp_path / "refused"), "--test", str(gate)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert f"moving-2026-12 runs its own adapter {own_id}: pass --for-list" in refused.stderr
    done = subprocess.run(
        [CALLX, "improve", "--output", str(tmp_path / "round"), "--max-steps", "1"]
        + ["--test", str(gate), "--for-list", "--no-promote"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "from movers-v1 in" in done.stderr  # fine-tuned from the list's adapter
    with session_scope(build_sessionmaker(engine)) as session:
        candidate = service.list_adapters(session, settings)[-1]
        assert candidate.adapter.name.startswith("candidate-")
        card = candidate.adapter.card or {}
        assert card["init_adapter"]["file"].endswith("movers-v1.gguf")
        [evaluation] = [
            e for e in registry_db.evaluations(session) if e.adapter_id == candidate.adapter.id
        ]
        assert evaluation.baseline_id == own_id and evaluation.calls == 3
        assert evaluation.taxonomy_version == "moving-2026-12"
        # The registry's promotion is untouched: other lists still run the default.
        assert service.promoted(session, settings).name == "callx-default"  # type: ignore[union-attr]
    engine.dispose()
