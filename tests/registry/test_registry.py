"""The model registry through its service, the API and the CLI, on PostgreSQL and SQLite:
the default registered on first use, registration and its refusals, the gate, forced
promotions recorded, rollbacks along the history."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import registry as registry_db
from app.db.session import build_sessionmaker, session_scope
from app.errors import ConflictError, InvalidRequestError
from app.llm.model_files import DEFAULT_ADAPTER, DEFAULT_READER, file_sha256
from app.main import create_app
from app.registry import service
from app.registry.follow import workers_model
from app.registry.gate import Guard, guard_figures
from schemas.taxonomy import load_taxonomy
from support.env import process_env
from support.factories import adapter_variant, gate_comparison, scored_result
from support.fakes import FakeTaskQueue


def test_the_default_is_registered_and_promoted_on_first_use(registry: Any) -> None:
    settings, sessions = registry
    with session_scope(sessions) as session:
        [listed] = service.list_adapters(session, settings)
        assert listed.promoted and listed.adapter.name == "callx-default"
        assert listed.adapter.sha256 == file_sha256(DEFAULT_ADAPTER)
        assert listed.adapter.base_model == "gemma-3-270m-q4_k_m.gguf"
        stored = service.adapter_file(settings, listed.adapter)
        assert file_sha256(stored) == listed.adapter.sha256
        assert stored.with_suffix(".json").is_file()  # its card beside it
    with session_scope(sessions) as session:  # once only
        assert len(service.list_adapters(session, settings)) == 1


def test_two_processes_opening_the_registry_at_once_register_the_default_once(
    registry: Any,
) -> None:
    # A worker's main process and its pool's child open the registry at the same moment: the
    # one that loses the race reads the winner's rows instead of failing (a child that failed
    # here stopped its whole worker).
    settings, sessions = registry
    second: dict[str, Any] = {}

    def open_registry() -> None:
        try:
            with session_scope(sessions) as session:
                adapter = service.promoted(session, settings)
                second["name"] = None if adapter is None else adapter.name
        except Exception as exc:  # reported below, with its type
            second["error"] = repr(exc)

    with session_scope(sessions) as session:
        service.ensure_default(session, settings)  # written, not yet committed
        racer = threading.Thread(target=open_registry)
        racer.start()
        racer.join(timeout=1.0)  # it reads no adapter, then waits on the first's insert
    racer.join(timeout=60)
    assert not racer.is_alive()
    assert second == {"name": "callx-default"}
    with session_scope(sessions) as session:
        assert [a.adapter.name for a in service.list_adapters(session, settings)] == [
            "callx-default"
        ]
        assert [p.action for p in registry_db.promotions(session, 10)] == ["initial"]


def test_registering_refuses_duplicates_and_what_is_not_an_adapter(
    registry: Any, tmp_path: Path
) -> None:
    settings, sessions = registry
    candidate = adapter_variant(tmp_path, "candidate", b"1")
    with session_scope(sessions) as session:
        row = service.register(session, settings, candidate, "v2", "test")
        assert row.sha256 == file_sha256(candidate)
        assert (settings.models_path / row.file_name).read_bytes() == candidate.read_bytes()
    with session_scope(sessions) as session:
        with pytest.raises(ConflictError, match="already registered as 'v2'"):
            service.register(session, settings, candidate, "other", "test")
        with pytest.raises(ConflictError, match="name 'v2' is taken"):
            service.register(session, settings, adapter_variant(tmp_path, "c3", b"3"), "v2", "test")
        not_gguf = tmp_path / "notes.gguf"
        not_gguf.write_text("hello")
        with pytest.raises(InvalidRequestError, match="not a GGUF file"):
            service.register(session, settings, not_gguf, None, "test")
        with pytest.raises(InvalidRequestError, match="no such file"):
            service.register(session, settings, tmp_path / "missing.gguf", None, "test")


def test_the_gate_refuses_worse_or_unmeasured_force_is_recorded(
    registry: Any, tmp_path: Path
) -> None:
    settings, sessions = registry
    with session_scope(sessions) as session:
        default = service.promoted(session, settings)
        worse = service.register(
            session, settings, adapter_variant(tmp_path, "w", b"w"), "worse", "t"
        )
        better = service.register(
            session, settings, adapter_variant(tmp_path, "b", b"b"), "better", "t"
        )
        worse_id, better_id, default_id = worse.id, better.id, default.id  # type: ignore[union-attr]
    with session_scope(sessions) as session:
        with pytest.raises(ConflictError, match="never evaluated against the promoted"):
            service.promote(session, settings, better_id, "t")
        candidate = service.get_adapter(session, worse_id)
        baseline = service.promoted(session, settings)
        service.record_evaluation(
            session, candidate, baseline, gate_comparison(0.88, 0.92, 0.03), "t"
        )
    with session_scope(sessions) as session:
        with pytest.raises(
            ConflictError,
            match=r"88\.0% against 92\.0% \(4\.0 points lower; paired McNemar p=0\.03\)",
        ):
            service.promote(session, settings, worse_id, "t")
    with session_scope(sessions) as session:
        forced = service.promote(session, settings, worse_id, "ops", force=True)
        assert forced.forced and "points lower" in (forced.note or "")
        assert service.promoted(session, settings).id == worse_id  # type: ignore[union-attr]
    with session_scope(sessions) as session:  # measured against the new promoted one: passes
        candidate = service.get_adapter(session, better_id)
        baseline = service.promoted(session, settings)
        row = service.record_evaluation(
            session, candidate, baseline, gate_comparison(0.93, 0.88), "t"
        )
        assert row.verdict == "passes"
    with session_scope(sessions) as session:
        passed = service.promote(session, settings, better_id, "ops")
        assert not passed.forced and passed.evaluation_id == row.id
        with pytest.raises(ConflictError, match="already promoted"):
            service.promote(session, settings, better_id, "ops")
    # Rollbacks go back along the history: better -> worse -> default, then nothing.
    for expected in (worse_id, default_id):
        with session_scope(sessions) as session:
            assert service.rollback(session, settings, "ops").adapter_id == expected
            assert service.promoted(session, settings).id == expected  # type: ignore[union-attr]
    with session_scope(sessions) as session:
        with pytest.raises(ConflictError, match="nothing to roll back to"):
            service.rollback(session, settings, "ops")


def _guard(lost_calls: int) -> dict[str, Any]:
    """A guard of callx's 85 test calls, the promoted adapter right on 79, the candidate on
    `lost_calls` fewer."""
    gold = ["billing"] * 85
    theirs = ["billing"] * 79 + ["other"] * 6
    ours = ["billing"] * (79 - lost_calls) + ["other"] * (6 + lost_calls)
    guard = Guard.parse("data/calls/test.jsonl@default", load_taxonomy(None))
    return guard_figures(
        guard, scored_result("candidate", list(ours), gold), scored_result("promoted", theirs, gold)
    )


def test_a_candidate_that_forgets_a_guard_is_refused_and_says_where(
    keyed: Any, tmp_path: Path
) -> None:
    settings, engine, admin, reader = keyed
    sessions = build_sessionmaker(engine)
    better = replace(gate_comparison(0.5, 0.3), guards=(_guard(1), _guard(8)))
    assert better.verdict == "forgets"  # the gate's own calls got better, a guard did not hold
    with session_scope(sessions) as session:
        service.ensure_default(session, settings)
        old = service.register(session, settings, adapter_variant(tmp_path, "o", b"o"), "old", "t")
        shop = service.register(
            session, settings, adapter_variant(tmp_path, "s", b"s"), "shop", "t"
        )
        shop_id = shop.id
        row = service.record_evaluation(
            session, shop, service.promoted(session, settings), better, "t"
        )
        assert row.verdict == "forgets" and [g["held"] for g in row.guards] == [True, False]
        # A row from before guards existed: no "guards" in its details.
        service.record_evaluation(
            session, old, service.promoted(session, settings), gate_comparison(0.9, 0.8), "t"
        ).details = {}
    with session_scope(sessions) as session:
        with pytest.raises(
            ConflictError,
            match=r"on the guard data/calls/test\.jsonl \(85 calls, default-\S+\) "
            r"83\.5% against 92\.9%, 9\.41 points lower where 2 are allowed",
        ):
            service.promote(session, settings, shop_id, "t")
    with TestClient(create_app(settings, queue=FakeTaskQueue())) as client:  # type: ignore[arg-type]
        listed = client.get("/v1/models", headers={"X-API-Key": reader}).json()["items"]
        assert [m["name"] for m in listed] == ["callx-default", "old", "shop"]
        assert listed[1]["evaluation"]["guards"] == []
        evaluation = listed[2]["evaluation"]
        assert evaluation["verdict"] == "forgets"
        assert [(g["points_lost"], g["held"]) for g in evaluation["guards"]] == [
            (1.18, True),
            (9.41, False),
        ]
        refused = client.post(f"/v1/models/{shop_id}/promote", headers={"X-API-Key": admin})
        assert refused.status_code == 409 and "9.41 points lower" in refused.json()["detail"]
        forced = client.post(
            f"/v1/models/{shop_id}/promote",
            headers={"X-API-Key": admin},
            json={"force": True, "note": "we no longer run the default list"},
        )
        assert forced.status_code == 200 and forced.json()["forced"], forced.text


def test_the_api_lists_for_readers_and_promotes_for_admins(keyed: Any, tmp_path: Path) -> None:
    settings, engine, admin, reader = keyed
    with session_scope(build_sessionmaker(engine)) as session:
        service.ensure_default(session, settings)
        variant = service.register(
            session, settings, adapter_variant(tmp_path, "v", b"v"), "v2", "t"
        )
        variant_id = variant.id
    with TestClient(create_app(settings, queue=FakeTaskQueue())) as client:  # type: ignore[arg-type]
        listed = client.get("/v1/models", headers={"X-API-Key": reader}).json()["items"]
        assert [(m["name"], m["promoted"]) for m in listed] == [
            ("callx-default", True),
            ("v2", False),
        ]
        path = f"/v1/models/{variant_id}/promote"
        assert client.post(path, headers={"X-API-Key": reader}).status_code == 403
        refused = client.post(path, headers={"X-API-Key": admin})
        assert refused.status_code == 409 and "never evaluated" in refused.json()["detail"]
        forced = client.post(
            path, headers={"X-API-Key": admin}, json={"force": True, "note": "hotfix"}
        )
        assert forced.status_code == 200, forced.text
        assert forced.json()["forced"] and forced.json()["promoted_by"] == "api:ops"
        back = client.post("/v1/models/rollback", headers={"X-API-Key": admin})
        assert back.status_code == 200 and back.json()["action"] == "rollback"
        assert client.post("/v1/models/99/promote", headers={"X-API-Key": admin}).status_code == 404


def test_an_admin_registers_an_uploaded_adapter_with_its_card(keyed: Any, tmp_path: Path) -> None:
    settings, _, admin, reader = keyed
    variant = adapter_variant(tmp_path, "shop-v3", b"v3")
    card = b'{"base_model": {"file": "gemma-3-270m-q4_k_m.gguf"}, "steps": 40}'
    admin_headers = {"X-API-Key": admin}
    with TestClient(create_app(settings, queue=FakeTaskQueue())) as client:  # type: ignore[arg-type]

        def upload(data: bytes, **extra: Any) -> Any:
            files: dict[str, Any] = {"file": ("shop-v3.gguf", data)}
            if "card" in extra:
                files["card"] = ("shop-v3.json", extra.pop("card"))
            return client.post(
                "/v1/models", headers=extra.pop("headers", admin_headers), files=files, data=extra
            )

        assert upload(variant.read_bytes(), headers={"X-API-Key": reader}).status_code == 403
        not_gguf = upload(b"PK\x03\x04 a zip file")
        assert not_gguf.status_code == 422 and "not a GGUF file" in not_gguf.json()["detail"]
        bad_card = upload(variant.read_bytes(), card=b"[1, 2]")
        assert bad_card.status_code == 422 and "card" in bad_card.json()["detail"]
        for shape in (b'{"base_model": "gemma"}', b'{"calibration": {"taxonomies": {"v": 1}}}'):
            wrong = upload(variant.read_bytes(), card=shape)
            assert wrong.status_code == 422, wrong.text
            assert wrong.json()["errors"][0]["loc"] == ["body", "card"]
        made = upload(variant.read_bytes(), card=card)
        assert made.status_code == 201, made.text
        body = made.json()
        assert (body["name"], body["sha256"]) == ("shop-v3", file_sha256(variant))
        assert body["base_model"] == "gemma-3-270m-q4_k_m.gguf" and not body["promoted"]
        assert body["registered_by"] == "api:ops"
        stored = settings.models_path / body["file_name"]
        assert stored.read_bytes() == variant.read_bytes()
        assert stored.with_suffix(".json").read_bytes() == card
        again = upload(variant.read_bytes(), name="other-name")
        assert again.status_code == 409 and "already registered" in again.json()["detail"]
        taken = upload(adapter_variant(tmp_path, "other", b"x").read_bytes(), name="shop-v3")
        assert taken.status_code == 409 and "(name)" in taken.json()["detail"]
        names = [m["name"] for m in client.get("/v1/models", headers=admin_headers).json()["items"]]
        assert names == ["callx-default", "shop-v3"]
    # Nothing half-written: the refused uploads left no file behind.
    assert sorted(p.name for p in settings.models_path.rglob("*.gguf")) == [
        "callx-default.gguf",
        "shop-v3.gguf",
    ]


def test_the_cli_says_what_is_wrong_in_one_line(
    settings: Settings, tmp_path: Path, clean_db: None
) -> None:
    env = {
        **process_env(settings),
        "CALLX_MODELS_DIR": str(tmp_path / "models"),
        "PATH": "/usr/bin:/bin",
    }
    callx = str(Path(".venv/bin/callx").resolve())
    missing = subprocess.run(
        [callx, "models", "register", str(tmp_path / "nope.gguf")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"callx models: no such file: {tmp_path / 'nope.gguf'}"
    variant = adapter_variant(tmp_path, "cli", b"c")
    done = subprocess.run(
        [callx, "models", "register", str(variant), "--name", "cli-v2"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "registered 'cli-v2' as id " in done.stderr
    new_id = done.stderr.split(" as id ")[1].split()[0]
    listed = subprocess.run([callx, "models", "list"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0
    default_line = listed.stdout.splitlines()[1]  # after the header: promoted, marked *
    assert default_line.startswith("*") and "callx-default" in default_line
    assert "cli-v2" in listed.stdout
    refused = subprocess.run(
        [callx, "models", "promote", new_id], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert f"run `callx models evaluate {new_id} --dataset LABELS.jsonl` first" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    dataset = "data/calls/dev.jsonl"
    for guard, said in (
        (str(tmp_path / "old.jsonl"), f"no such file: {tmp_path / 'old.jsonl'}"),
        (f"{dataset}@nosuch", "taxonomy 'nosuch' is neither a file nor a built-in name"),
    ):
        wrong = subprocess.run(
            [callx, "models", "evaluate", new_id, "--dataset", dataset, "--guard", guard],
            env=env,
            capture_output=True,
            text=True,
        )
        assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
        assert wrong.stderr.startswith(f"callx models: --guard {guard}: {said}"), wrong.stderr


def test_a_reextraction_names_the_reader_of_a_list_its_workers_read(registry: Any) -> None:
    """What workers run, as a re-extraction records it (its identity): the promoted adapter,
    and the reader on a list whose definitions they read with one, so that another reader
    makes another job."""
    settings, sessions = registry
    local = settings.model_copy(
        update={"extraction": settings.extraction.model_copy(update={"backend": "llamacpp"})}
    )

    def llamacpp(**update: Any) -> Settings:
        return local.model_copy(update={"llamacpp": local.llamacpp.model_copy(update=update)})

    adapter, reader = file_sha256(DEFAULT_ADAPTER), file_sha256(DEFAULT_READER)
    with session_scope(sessions) as session:
        # The default list, which the adapter learnt: read by the adapter alone.
        assert workers_model(session, local, load_taxonomy().version) == adapter
        # A customer's list: its definitions read by the shipped reader.
        assert workers_model(session, local, "shop-1") == f"{adapter}+reader:{reader}"
        # No reader (the base model reads them), or definitions not read: the adapter alone.
        assert workers_model(session, llamacpp(default_reader=False), "shop-1") == adapter
        assert workers_model(session, llamacpp(read_definitions="off"), "shop-1") == adapter
        # Workers of configured files follow no registry: none, as before.
        assert workers_model(session, llamacpp(lora_path=DEFAULT_ADAPTER), "shop-1") is None
