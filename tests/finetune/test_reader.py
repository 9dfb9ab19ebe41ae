"""A reader (`callx finetune --reads-definitions`) with the real model and real torch: its
examples are the tokens the backend scores when it reads a list's definitions, its card says
what it is, and the llamacpp backend reads with it, only there, and refuses it anywhere else."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import app.finetune  # noqa: E402, F401  (before torch: it sets torch's OpenMP wait policy)

pytest.importorskip("torch", reason="needs the finetune extra: pip install -e '.[finetune]'")

from app.cli.main import cli  # noqa: E402
from app.extraction.pipeline import extract  # noqa: E402
from app.finetune.base_model import open_base_model  # noqa: E402
from app.finetune.data import build_examples, parse_train_arg  # noqa: E402
from app.llm.base import ExtractionRequest  # noqa: E402
from app.llm.llamacpp import LlamaCppBackend  # noqa: E402
from app.llm.model_files import DEFAULT_ADAPTER, file_sha256, reader_for  # noqa: E402
from app.llm.prompts import definitions_to_read  # noqa: E402
from schemas.taxonomy import load_taxonomy  # noqa: E402

pytestmark = pytest.mark.model

PETS = {
    "version": "pets-1",
    "reasons": [
        {"code": "sick_pet", "label": "sick pet",
         "definition": {"en": "the customer's animal is ill or injured. Not a food order (food_order).",
                        "fr": "l'animal du client est malade ou blessé. Pas une commande (food_order)."}},
        {"code": "food_order", "label": "food order",
         "definition": {"en": "the customer orders or asks about pet food",
                        "fr": "le client commande ou demande des croquettes"}},
        {"code": "grooming", "label": "grooming",
         "definition": {"en": "the customer books a wash or a haircut for the animal",
                        "fr": "le client réserve un toilettage pour l'animal"}},
    ],
}  # fmt: skip
CALLS = [
    {"transcript": "Customer: My dog has been limping since yesterday.", "reason": "sick_pet",
     "language": "en"},
    {"transcript": "Client : Je voudrais commander un sac de croquettes.", "reason": "food_order",
     "language": "fr"},
    {"transcript": "Customer: Can I book a haircut for my poodle?", "reason": "grooming"},
]  # fmt: skip
DEFAULT_CALL = "Customer: My Fibre 500 box drops every evening."


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("reader")
    taxonomy = folder / "pets.yaml"
    taxonomy.write_text(yaml.safe_dump(PETS, allow_unicode=True), "utf-8")
    calls = folder / "pets.jsonl"
    calls.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CALLS), "utf-8")
    return {"folder": folder, "taxonomy": taxonomy, "calls": calls}


def _finetune(
    files: dict[str, Path], model_path: Path, output: Path, *extra: str, exit_code: int = 0
) -> str:
    args = [
        "finetune", "--train", f"{files['calls']}@{files['taxonomy']}", "--output", str(output),
        "--base-model", str(model_path), "--batch-size", "3", "--lr", "5e-3", "--rank", "4",
        "--alpha", "8", *extra,
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == exit_code, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def reader(files: dict[str, Path], model_path: Path) -> dict[str, Any]:
    """Three steps of the three calls: a reader that has learnt these definitions."""
    output = files["folder"] / "out" / "pets-reader.gguf"
    said = _finetune(files, model_path, output, "--reads-definitions", "--max-steps", "3")
    card = json.loads(output.with_suffix(".json").read_text("utf-8"))
    return {"path": output, "said": said, "card": card}


def test_a_readers_examples_are_the_tokens_the_backend_reads(
    files: dict[str, Path], model_path: Path
) -> None:
    tokens, _ = open_base_model(model_path)
    pets = load_taxonomy(files["taxonomy"])
    source = parse_train_arg(f"{files['calls']}@{files['taxonomy']}", None)
    examples, summaries = build_examples([source], tokens, reads_definitions=True, seed=0)
    assert summaries[0].examples == 3
    expected = {
        # An English call, a French one (French frame and definitions), one of no language
        # (the main definitions); each reason's text without its border sentence.
        tuple(tokens.definition_frame(CALLS[0]["transcript"], "en")): definitions_to_read(pets, "en")[0],
        tuple(tokens.definition_frame(CALLS[1]["transcript"], "fr")): definitions_to_read(pets, "fr")[1],
        tuple(tokens.definition_frame(CALLS[2]["transcript"])): definitions_to_read(pets)[2],
    }  # fmt: skip
    assert definitions_to_read(pets, "fr")[0] == "l'animal du client est malade ou blessé."
    for example in examples:
        first = min(example.scored)
        prompt = example.ids[:first]
        option = tokens.definition_option(expected[prompt])
        # The loss is on the definition's tokens, all of them and only them.
        assert example.ids[first:] == tuple(option)
        assert example.scored == tuple(range(first, len(example.ids)))
    # A long call is fitted to --max-tokens, its definition whole.
    long_call = {"transcript": "Customer: my cat sneezes.\n" * 300, "reason": "sick_pet"}
    path = files["folder"] / "long.jsonl"
    path.write_text(json.dumps(long_call) + "\n", "utf-8")
    source = parse_train_arg(f"{path}@{files['taxonomy']}", None)
    (example,), summaries = build_examples([source], tokens, max_tokens=200, reads_definitions=True)
    assert summaries[0].truncated == 1 and len(example.ids) <= 200
    assert example.ids[min(example.scored) :] == tuple(
        tokens.definition_option(definitions_to_read(pets)[0])
    )


def test_the_readers_card_says_it_reads_definitions(reader: dict[str, Any]) -> None:
    card = reader["card"]
    assert card["task"] == "read_definitions" and card["steps"] == 3
    assert card["hyperparameters"]["reads_definitions"] is True
    assert card["taxonomies"]["trained"] == ["pets-1"]
    assert f"CALLX_LLAMACPP__READER_PATH={reader['path']}" in reader["said"]


def test_the_backend_reads_definitions_with_the_reader_and_answers_without_it(
    files: dict[str, Path],
    model_path: Path,
    reader: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="app.llm.llamacpp")
    pets = load_taxonomy(files["taxonomy"])
    texts = definitions_to_read(pets)
    call = "Customer: My rabbit stopped eating and seems in pain."
    base = LlamaCppBackend(model_path, n_ctx=1024, n_threads=2, lora_path=DEFAULT_ADAPTER)
    with_reader = LlamaCppBackend(
        model_path, n_ctx=1024, n_threads=2, lora_path=DEFAULT_ADAPTER, reader_path=reader["path"]
    )
    assert with_reader.reader == "pets-reader.gguf" and base.reader is None
    assert any("reader pets-reader.gguf" in r.getMessage() for r in caplog.records)
    # On a list the adapter never learnt, the definitions are read with the reader on: its
    # scores, not the base model's (which read them when there is no reader).
    assert with_reader.reads_definitions(pets)
    with with_reader._reading_weights():
        read = with_reader._definition_log_probabilities(call, texts)
    with base._reading_weights():
        by_base = base._definition_log_probabilities(call, texts)
    assert np.abs(read - by_base).max() > 0.1
    answer = with_reader.extract(ExtractionRequest(call, pets))
    scores = with_reader._definition_scores(pets, call, None)
    assert answer.answer.reason == pets.codes[int(np.argmax(scores))]
    assert scores == pytest.approx(
        read - with_reader._definition_priors[(pets.version, "en", texts)], abs=1e-3
    )
    # The reader was trained to say these definitions: it is surer of the right one.
    assert read[0] > by_base[0]
    # After reading, the answering adapter is back: on the default list (which it learnt)
    # the answer is the same as without a reader, bit for bit (each from an empty cache).
    with_reader._llm.reset()
    base._llm.reset()
    default = load_taxonomy("schemas/taxonomies/default.yaml")
    assert with_reader.extract(ExtractionRequest(DEFAULT_CALL, default)) == base.extract(
        ExtractionRequest(DEFAULT_CALL, default)
    )


def test_each_extraction_records_the_reader_that_read_its_list(
    files: dict[str, Path], model_path: Path, reader: dict[str, Any]
) -> None:
    """The pipeline behind REST, batch and the CLI stores which reader chose the reason: the
    reader's sha256 on a list it read, none on the default list (the adapter's own)."""
    backend = LlamaCppBackend(
        model_path, n_ctx=1024, n_threads=2, lora_path=DEFAULT_ADAPTER, reader_path=reader["path"]
    )
    pets = load_taxonomy(files["taxonomy"])
    default = load_taxonomy("schemas/taxonomies/default.yaml")
    on_pets = extract(
        "Customer: My cat has been sneezing all week.", backend=backend, taxonomy=pets
    )
    assert on_pets.succeeded and on_pets.reason in pets.codes
    assert on_pets.reader_sha256 == file_sha256(reader["path"])
    assert on_pets.adapter_sha256 == file_sha256(DEFAULT_ADAPTER)
    on_default = extract(DEFAULT_CALL, backend=backend, taxonomy=default)
    assert on_default.succeeded and on_default.reader_sha256 is None
    # Without a reader the base model reads the list: no reader is recorded.
    without = LlamaCppBackend(model_path, n_ctx=1024, n_threads=2, lora_path=DEFAULT_ADAPTER)
    assert without.reads_definitions(pets)
    assert (
        extract("Customer: My cat is sneezing.", backend=without, taxonomy=pets).reader_sha256
        is None
    )


def test_a_reader_and_an_answering_adapter_are_not_mistaken_for_each_other(
    files: dict[str, Path], model_path: Path, reader: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="is a reader .*give it as reader_path"):
        LlamaCppBackend(model_path, n_ctx=512, n_threads=1, lora_path=reader["path"])
    with pytest.raises(ValueError, match="is not a reader: its model card"):
        LlamaCppBackend(model_path, n_ctx=512, n_threads=1, reader_path=DEFAULT_ADAPTER)
    with pytest.raises(ValueError, match="reader not found"):
        LlamaCppBackend(model_path, n_ctx=512, n_threads=1, reader_path=tmp_path / "none.gguf")
    # Training continues a reader only as a reader, and an answering adapter only as one.
    output = tmp_path / "more.gguf"
    said = _finetune(
        files, model_path, output, "--init-adapter", str(reader["path"]), "--max-steps", "1",
        exit_code=2,
    )  # fmt: skip
    assert "is a reader" in said and "--reads-definitions" in said and not output.exists()
    said = _finetune(
        files, model_path, output, "--reads-definitions", "--init-adapter", str(DEFAULT_ADAPTER),
        "--rank", "8", "--alpha", "16", "--max-steps", "1", exit_code=2,
    )  # fmt: skip
    assert "answers calls: a reader" in said and not output.exists()


def test_the_shipped_reader_is_used_with_the_default_model_only(tmp_path: Path) -> None:
    mine = tmp_path / "mine.gguf"
    assert reader_for(None, mine, True) == mine
    assert reader_for(tmp_path / "other-model.gguf", None, True) is None
    assert reader_for(None, None, False) is None
    shipped = reader_for(None, None, True)
    assert shipped is not None and shipped.name == "callx-reader.gguf" and shipped.is_file()
