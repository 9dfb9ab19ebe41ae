"""An adapter promoted for one list only, on PostgreSQL and SQLite, through the service, the
API and the CLI: the list's workers run it, every other list keeps the registry's promoted
adapter; the gate reads an evaluation on that list's calls; a mistyped list is refused even
with --force; rolling back goes along the list's own promotions, then hands the list back."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db.session import build_sessionmaker, session_scope
from app.errors import ConflictError, InvalidRequestError
from app.main import create_app
from app.registry import service
from support.env import process_env
from support.factories import adapter_variant, gate_comparison
from support.fakes import FakeTaskQueue

MOVING = "moving-2026-12"
DEFAULT_LIST = "default-2026-11-29"


def _evaluate(session: Any, settings: Settings, adapter_id: int, version: str, ours: float) -> None:
    """The candidate measured against the adapter `version`'s workers run, on its calls."""
    service.record_evaluation(
        session,
        service.get_adapter(session, adapter_id),
        service.promoted(session, settings, version),
        gate_comparison(ours, 0.50, taxonomy_version=version),
        "t",
    )


def _served(session: Any, settings: Settings, version: str | None) -> str:
    adapter = service.promoted(session, settings, version)
    assert adapter is not None
    return adapter.name


def test_a_list_runs_its_own_adapter_and_the_others_keep_theirs(
    registry: Any, tmp_path: Path
) -> None:
    settings, sessions = registry
    with session_scope(sessions) as session:
        service.ensure_default(session, settings)
        moving = service.register(
            session, settings, adapter_variant(tmp_path, "m", b"m"), "moving", "t"
        )
        general = service.register(
            session, settings, adapter_variant(tmp_path, "g", b"g"), "gen", "t"
        )
        moving_id, general_id = moving.id, general.id
    with session_scope(sessions) as session:
        # Measured on the default list's calls only: not a measure of the moving list.
        _evaluate(session, settings, moving_id, DEFAULT_LIST, 0.9)
        with pytest.raises(InvalidRequestError, match="never evaluated on calls of 'moving-2026"):
            service.promote(session, settings, moving_id, "t", force=True, for_taxonomy=MOVING)
        with pytest.raises(InvalidRequestError, match=r"'movng' \(it was on: default-2026-11-29\)"):
            service.promote(session, settings, moving_id, "t", force=True, for_taxonomy="movng")
    with session_scope(sessions) as session:
        _evaluate(session, settings, moving_id, MOVING, 0.40)  # worse than the default there
        with pytest.raises(ConflictError, match="worse than the promoted 'callx-default'"):
            service.promote(session, settings, moving_id, "t", for_taxonomy=MOVING)
    with session_scope(sessions) as session:
        _evaluate(session, settings, moving_id, MOVING, 0.70)
        row = service.promote(session, settings, moving_id, "ops", for_taxonomy=MOVING)
        assert (row.action, row.taxonomy_version, row.forced) == ("promote", MOVING, False)
    with session_scope(sessions) as session:
        assert _served(session, settings, MOVING) == "moving"
        assert _served(session, settings, DEFAULT_LIST) == "callx-default"
        assert _served(session, settings, None) == "callx-default"
        with pytest.raises(ConflictError, match=f"{MOVING} already runs 'moving'"):
            service.promote(session, settings, moving_id, "t", for_taxonomy=MOVING)
        listed = {item.adapter.name: item for item in service.list_adapters(session, settings)}
        assert listed["moving"].promoted_for == (MOVING,) and not listed["moving"].promoted
        assert listed["callx-default"].promoted and listed["callx-default"].promoted_for == ()
    # The registry's promotion moves every list without its own, not the moving list.
    with session_scope(sessions) as session:
        service.promote(session, settings, general_id, "ops", force=True)
    with session_scope(sessions) as session:
        assert _served(session, settings, DEFAULT_LIST) == "gen"
        assert _served(session, settings, MOVING) == "moving"
    # Rolling the list back hands it to the registry's adapter, which it then follows; the
    # registry's own history is untouched.
    with session_scope(sessions) as session:
        released = service.rollback(session, settings, "ops", for_taxonomy=MOVING)
        assert (released.action, released.taxonomy_version) == ("release", MOVING)
        # Like every row: the adapter the list runs from now on, and the one it left.
        assert (released.adapter_id, released.previous_id) == (general_id, moving_id)
    with session_scope(sessions) as session:
        assert _served(session, settings, MOVING) == "gen"
        assert _served(session, settings, None) == "gen"
        assert all(not item.promoted_for for item in service.list_adapters(session, settings))
        with pytest.raises(ConflictError, match=f"nothing to roll back for {MOVING}.*own: none"):
            service.rollback(session, settings, "ops", for_taxonomy=MOVING)
        # The list runs the registry's adapter: asking it to run that one again says so.
        with pytest.raises(ConflictError, match="already runs 'gen'.*registry's promoted"):
            service.promote(session, settings, general_id, "t", for_taxonomy=MOVING)
    with session_scope(sessions) as session:
        assert service.rollback(session, settings, "ops").adapter_id != general_id
        assert _served(session, settings, MOVING) == "callx-default"


def test_a_lists_history_goes_back_step_by_step(registry: Any, tmp_path: Path) -> None:
    settings, sessions = registry
    ids = []
    for name in ("first", "second"):
        with session_scope(sessions) as session:
            made = service.register(
                session, settings, adapter_variant(tmp_path, name, name.encode()), name, "t"
            )
            _evaluate(session, settings, made.id, MOVING, 0.9)
            service.promote(session, settings, made.id, "t", for_taxonomy=MOVING)
            ids.append(made.id)
    with session_scope(sessions) as session:
        assert _served(session, settings, MOVING) == "second"
        back = service.rollback(session, settings, "t", for_taxonomy=MOVING)
        assert (back.action, back.adapter_id, back.previous_id) == ("rollback", ids[0], ids[1])
    with session_scope(sessions) as session:
        assert _served(session, settings, MOVING) == "first"
        assert service.rollback(session, settings, "t", for_taxonomy=MOVING).action == "release"
    with session_scope(sessions) as session:
        assert _served(session, settings, MOVING) == "callx-default"


def test_the_api_promotes_and_rolls_back_for_one_list(keyed: Any, tmp_path: Path) -> None:
    settings, engine, admin, reader = keyed
    with session_scope(build_sessionmaker(engine)) as session:
        service.ensure_default(session, settings)
        made = service.register(
            session, settings, adapter_variant(tmp_path, "m", b"m"), "moving", "t"
        )
        _evaluate(session, settings, made.id, MOVING, 0.8)
        made_id = made.id
    admin_headers = {"X-API-Key": admin}
    with TestClient(create_app(settings, queue=FakeTaskQueue())) as client:  # type: ignore[arg-type]
        path = f"/v1/models/{made_id}/promote"
        typo = client.post(path, headers=admin_headers, json={"force": True, "for_taxonomy": "mv"})
        assert typo.status_code == 422 and "never evaluated on calls of 'mv'" in typo.text
        assert typo.json()["errors"][0]["loc"] == ["body", "for_taxonomy"]
        empty = client.post(path, headers=admin_headers, json={"for_taxonomy": ""})
        assert empty.status_code == 422
        done = client.post(path, headers=admin_headers, json={"for_taxonomy": MOVING})
        assert done.status_code == 200, done.text
        assert (done.json()["taxonomy_version"], done.json()["action"]) == (MOVING, "promote")
        listed = client.get("/v1/models", headers={"X-API-Key": reader}).json()["items"]
        assert [(m["name"], m["promoted"], m["promoted_for"]) for m in listed] == [
            ("callx-default", True, []),
            ("moving", False, [MOVING]),
        ]
        back = client.post(
            "/v1/models/rollback", headers=admin_headers, json={"for_taxonomy": MOVING}
        )
        assert back.status_code == 200 and back.json()["action"] == "release"
        none_left = client.post(
            "/v1/models/rollback", headers=admin_headers, json={"for_taxonomy": MOVING}
        )
        assert none_left.status_code == 409 and "nothing to roll back for" in none_left.text
        assert (
            client.post(
                "/v1/models/rollback", headers={"X-API-Key": reader}, json={"for_taxonomy": MOVING}
            ).status_code
            == 403
        )


def test_the_cli_promotes_for_a_list_and_lists_it(
    settings: Settings, tmp_path: Path, clean_db: None
) -> None:
    models = settings.model_copy(update={"models_dir": tmp_path / "models"})
    env = {**process_env(settings), "CALLX_MODELS_DIR": str(tmp_path / "models")}
    callx = str(Path(".venv/bin/callx").resolve())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([callx, "models", *args], env=env, capture_output=True, text=True)

    registered = run("register", str(adapter_variant(tmp_path, "cli", b"c")), "--name", "moving-v1")
    assert registered.returncode == 0, registered.stderr
    new_id = registered.stderr.split(" as id ")[1].split()[0]
    typo = run("promote", new_id, "--for-taxonomy", "movng", "--force")
    assert typo.returncode == 2 and len(typo.stderr.strip().splitlines()) == 1
    assert "never evaluated on calls of 'movng'" in typo.stderr
    from app.db.session import build_engine

    engine = build_engine(models)
    with session_scope(build_sessionmaker(engine)) as session:
        _evaluate(session, models, int(new_id), MOVING, 0.8)
    engine.dispose()
    done = run("promote", new_id, "--for-taxonomy", MOVING)
    assert done.returncode == 0, done.stderr
    assert f"workers of {MOVING} switch to it" in done.stderr
    listed = run("list").stdout.splitlines()
    assert "promoted for" in listed[0]
    [line] = [row for row in listed if "moving-v1" in row]
    assert MOVING in line and not line.startswith("*")
    wrong_list = run(
        "evaluate", new_id, "--dataset", "data/calls/dev.jsonl", "--for-taxonomy", MOVING
    )
    assert wrong_list.returncode == 2 and len(wrong_list.stderr.strip().splitlines()) == 1
    assert "the dataset's calls are read with default-" in wrong_list.stderr
    other = run("register", str(adapter_variant(tmp_path, "other", b"o")), "--name", "general-v2")
    other_id = other.stderr.split(" as id ")[1].split()[0]
    everyone = run("promote", other_id, "--force")
    assert everyone.returncode == 0, everyone.stderr
    assert f"except those of {MOVING}, which run their own" in everyone.stderr
    back = run("rollback", "--for-taxonomy", MOVING)
    assert back.returncode == 0 and f"{MOVING} has no adapter of its own any more" in back.stderr
    assert f"promoted adapter {other_id}" in back.stderr
