"""Blends of adapters: the weighted mean of their updates written exactly as one adapter
(app/finetune/blend.py), registered by `callx models blend` on PostgreSQL and SQLite, and run
by llama.cpp."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import Settings
from app.db.session import build_engine, build_sessionmaker, session_scope
from app.errors import InvalidRequestError
from app.finetune import FinetuneError
from app.finetune.blend import blend_adapters
from app.llm.calibration import known_trained_taxonomies, read_card, trained_taxonomies
from app.llm.model_files import DEFAULT_ADAPTER
from app.records import read_records
from app.registry import service
from app.registry.gate import run_adapter
from schemas.taxonomy import load_taxonomy
from support.env import process_env

gguf = pytest.importorskip("gguf", reason="needs the finetune extra: pip install -e '.[finetune]'")

CALLX = str(Path(".venv/bin/callx").resolve())
LAYERS = ("blk.0.attn_q.weight", "blk.1.ffn_up.weight")


def _adapter(
    path: Path,
    rank: int,
    alpha: float,
    seed: int,
    layers: tuple[str, ...] = LAYERS,
    width: int = 6,
    kind: type = np.float16,
) -> None:
    """A LoRA GGUF of random tensors: A (rank, width) and B (5, rank) per layer."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for layer in layers:
        for part, shape in (("lora_a", (rank, width)), ("lora_b", (5, rank))):
            writer.add_tensor(f"{layer}.{part}", rng.normal(size=shape).astype(kind))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _update(path: Path, layer: str) -> np.ndarray:
    """The layer's update as llama.cpp applies it: alpha / rank * B @ A."""
    reader = gguf.GGUFReader(str(path))
    alpha = float(reader.fields[gguf.Keys.Adapter.LORA_ALPHA].contents())
    tensors = {t.name: np.array(t.data, dtype=np.float64) for t in reader.tensors}
    a, b = tensors[f"{layer}.lora_a"], tensors[f"{layer}.lora_b"]
    return alpha / a.shape[0] * b @ a


def test_a_blend_is_the_weighted_mean_of_the_updates(tmp_path: Path) -> None:
    first, second = tmp_path / "first.gguf", tmp_path / "second.gguf"
    _adapter(first, rank=2, alpha=4.0, seed=1)
    _adapter(second, rank=3, alpha=9.0, seed=2)
    output = tmp_path / "blend.gguf"
    assert blend_adapters([(first, 0.7), (second, 0.3)], output) == 5
    for layer in LAYERS:
        expected = 0.7 * _update(first, layer) + 0.3 * _update(second, layer)
        np.testing.assert_allclose(_update(output, layer), expected, rtol=0, atol=2e-2)
        assert np.abs(expected).max() > 1  # not a comparison of near-zeros
    assert not output.with_name("blend.gguf.partial").exists()


def test_what_cannot_be_blended_is_refused(tmp_path: Path) -> None:
    first, other = tmp_path / "first.gguf", tmp_path / "other.gguf"
    _adapter(first, rank=2, alpha=4.0, seed=1)
    _adapter(other, rank=2, alpha=4.0, seed=2, layers=LAYERS[:1])
    wider, quantized = tmp_path / "wider.gguf", tmp_path / "quantized.gguf"
    _adapter(wider, rank=2, alpha=4.0, seed=3, width=7)  # another base model's shapes
    _adapter(quantized, rank=2, alpha=4.0, seed=4, kind=np.int8)  # not float: raw bytes
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    output = tmp_path / "out.gguf"
    cases = [
        ([(first, 0.5), (other, 0.5)], "does not adapt the same tensors"),
        ([(first, 0.5), (wider, 0.5)], r"is \(2, 7\), against \(2, 6\) .*different base models"),
        ([(first, 0.5), (quantized, 0.5)], "has I8 tensors: only F16 and F32 are blended"),
        ([(first, 0.5), (text, 0.5)], "is not a GGUF file"),
        ([(first, 0.5), (tmp_path / "missing.gguf", 0.5)], "no such adapter"),
        ([(first, 1.0), (first, 0.0)], "weights must be positive"),
        ([(first, 1.0)], "at least two adapters"),
    ]
    for parts, said in cases:
        with pytest.raises(FinetuneError, match=said):
            blend_adapters(parts, output)
        assert not output.exists()


def test_the_recipes_blend_files_with_a_card_naming_them(tmp_path: Path) -> None:
    first, second = tmp_path / "first.gguf", tmp_path / "second.gguf"
    _adapter(first, 4, 8.0, seed=1)
    _adapter(second, 2, 2.0, seed=2)
    (tmp_path / "first.json").write_text('{"callx_prompt_version": "p1"}')
    second_card = {
        "callx_prompt_version": "p2",
        "base_model": {"file": "base.gguf"},
        "hyperparameters": {"targets": ["q_proj"]},
        "training_files": [],
    }
    (tmp_path / "second.json").write_text(json.dumps(second_card))
    output = tmp_path / "out" / "blend.gguf"

    def blend(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "app.finetune.blend", *args]
        return subprocess.run(command, capture_output=True, text=True)

    before = sorted(p.name for p in tmp_path.rglob("*"))
    parts = (str(first), str(second))
    for args, said in (
        ((*parts, "--weight", "1", "--output", str(output)), "in (0, 1), not 1"),
        ((*parts, "--weight", "0.5"), "the following arguments are required: --output"),
        ((*parts, "--weight", "0.5", "--output", str(tmp_path / "x.json")), "a .gguf file"),
        ((*parts, "--weight", "0.5", "--output", str(first)), "not be one of the adapters"),
        ((str(first), str(tmp_path / "no.gguf"), "--weight", "0.5", "--output", str(output)),
         f"no such adapter: {tmp_path / 'no.gguf'}"),
        ((*parts, "--weight", "0.5", "--output", str(tmp_path)), "a .gguf file"),
    ):  # fmt: skip
        wrong = blend(*args)
        assert wrong.returncode == 2 and said in wrong.stderr, wrong.stderr
        assert wrong.stderr.startswith("error: ") and len(wrong.stderr.splitlines()) == 1
        assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
    # A card beside a part that is not JSON: refused before anything is written.
    (tmp_path / "bad.gguf").write_bytes(first.read_bytes())
    (tmp_path / "bad.json").write_text("{not json")
    wrong = blend(
        str(tmp_path / "bad.gguf"), str(second), "--weight", "0.5", "--output", str(output)
    )
    assert wrong.returncode == 2 and wrong.stderr.strip() == (
        f"error: {tmp_path / 'bad.json'}: the card is not JSON"
    )
    assert not output.parent.exists()

    done = blend(*parts, "--weight", "0.25", "--output", str(output))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"written: {output} (rank 6)"
    assert sorted(p.name for p in output.parent.iterdir()) == ["blend.gguf", "blend.json"]
    again = tmp_path / "again.gguf"
    blend_adapters([(first, 0.75), (second, 0.25)], again)
    assert output.read_bytes() == again.read_bytes()  # the same bytes as the registry's blend
    card = read_card(output)
    assert card is not None and card["created_by"] == "python -m app.finetune.blend"
    assert [(p["file"], p["weight"], p["card"]) for p in card["blend_of"]] == [
        ("first.gguf", 0.75, {"callx_prompt_version": "p1"}),
        ("second.gguf", 0.25, second_card),
    ]
    assert card["blend_of"][0]["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert card["blend_of"][1]["sha256"] == hashlib.sha256(second.read_bytes()).hexdigest()
    # Every part's prompt; the base model and targets of the first part that gives them.
    assert card["callx_prompt_version"] == "p1 + p2"
    assert card["base_model"] == {"file": "base.gguf"}
    assert card["hyperparameters"] == {"rank": 6, "alpha": 6.0, "targets": ["q_proj"]}
    # The first part's card lists no training files: what the blend learnt is unknown.
    assert known_trained_taxonomies(card) is None
    # The same prompt twice is named once.
    (tmp_path / "first.json").write_text('{"callx_prompt_version": "p2"}')
    assert blend(*parts, "--weight", "0.5", "--output", str(output)).returncode == 0
    assert read_card(output)["callx_prompt_version"] == "p2"  # type: ignore[index]


@pytest.mark.model
def test_the_registry_blends_two_adapters_and_llamacpp_runs_the_blend(
    registry: Any, tmp_path: Path
) -> None:
    settings, sessions = registry
    doubled = tmp_path / "doubled.gguf"  # another adapter: the default's update, twice
    blend_adapters([(DEFAULT_ADAPTER, 1.0), (DEFAULT_ADAPTER, 1.0)], doubled)
    with session_scope(sessions) as session:
        other = service.register(session, settings, doubled, None, "test")
        default = service.promoted(session, settings)
        assert default is not None
        blend = service.blend(session, settings, default.id, other.id, 0.25, None, "test")
        assert blend.name == f"blend-{default.id}-{other.id}-0.25"
        card = blend.card or {}
        assert card["rank"] == 8 + 16 and card["created_by"] == "callx models blend"
        assert [(p["name"], p["weight"]) for p in card["blend_of"]] == [
            ("callx-default", 0.75),
            ("doubled", 0.25),
        ]
        assert card["base_model"]["file"] == "gemma-3-270m-q4_k_m.gguf"
        # what `callx improve` reads to continue from it: rank 24 at scale 1
        assert (card["hyperparameters"]["rank"], card["hyperparameters"]["alpha"]) == (24, 24.0)
        # Trained on what its parents were trained on; no calibration carried over.
        assert trained_taxonomies(card) == trained_taxonomies(read_card(DEFAULT_ADAPTER))
        assert "calibration" not in card
        stored = service.adapter_file(settings, blend)
        with pytest.raises(InvalidRequestError, match="between 0 and 1 excluded, not 1"):
            service.blend(session, settings, default.id, other.id, 1.0, "x", "test")
        with pytest.raises(InvalidRequestError, match="two different adapters"):
            service.blend(session, settings, other.id, other.id, 0.5, "x", "test")
    # 0.75 U + 0.25 (2 U) = 1.25 U: llama.cpp loads the rank-24 blend and answers.
    records = read_records(Path("data/calls/dev.jsonl"))[:3]
    result = run_adapter(settings, stored, "blend", records, load_taxonomy(), lambda: None)
    assert result.n == 3 and result.failed == 0 and result.invalid_rate == 0


@pytest.mark.services
def test_the_cli_blends_and_says_what_is_wrong_in_one_line(
    settings: Settings, tmp_path: Path, clean_db: None
) -> None:
    env = {**process_env(settings), "CALLX_MODELS_DIR": str(tmp_path / "models")}
    doubled = tmp_path / "doubled.gguf"
    blend_adapters([(DEFAULT_ADAPTER, 1.0), (DEFAULT_ADAPTER, 1.0)], doubled)

    def callx(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CALLX, *args], env=env, capture_output=True, text=True)

    registered = callx("models", "register", str(doubled))
    assert registered.returncode == 0, registered.stderr
    other = registered.stderr.split(" as id ")[1].split()[0]
    [promoted] = [line for line in callx("models", "list").stdout.splitlines() if line[0] == "*"]
    default = promoted.split()[1]
    for args, said in (
        ((default, other, "--weight", "1.5"), "between 0 and 1 excluded, not 1.5"),
        ((other, other), "blend two different adapters"),
        ((default, "999999"), "no adapter 999999"),
    ):
        wrong = callx("models", "blend", *args)
        assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
        assert wrong.stderr.startswith("callx models: ") and said in wrong.stderr, wrong.stderr
    done = callx("models", "blend", default, other, "--weight", "0.3", "--name", "half")
    assert done.returncode == 0, done.stderr
    assert "registered 'half' as id " in done.stderr and "(rank 24," in done.stderr
    assert f"0.7 of adapter {default} and 0.3 of adapter {other}" in done.stderr
    assert "half" in callx("models", "list").stdout
    engine = build_engine(settings)
    registry = settings.model_copy(update={"models_dir": tmp_path / "models"})
    with session_scope(build_sessionmaker(engine)) as session:
        listed = service.list_adapters(session, registry)
        [row] = [item.adapter for item in listed if item.adapter.name == "half"]
        assert service.adapter_file(registry, row).is_file()
    engine.dispose()
