"""`callx finetune` with the real model and real torch: a few steps on tiny data from two
taxonomies, the adapter GGUF and its card, the adapter loaded by the llamacpp backend, resume.

Just over 400 lines: one training run is shared by the checks (loading torch and the model
costs most of the time), so they stay in one module."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import app.finetune  # noqa: E402, F401  (before torch: it sets torch's OpenMP wait policy)

pytest.importorskip("torch", reason="needs the finetune extra: pip install -e '.[finetune]'")

from app.cli.main import cli  # noqa: E402
from app.finetune import FinetuneError  # noqa: E402
from app.finetune.base_model import open_base_model  # noqa: E402
from app.finetune.data import (  # noqa: E402
    DEFAULT_MAX_TOKENS,
    build_examples,
    file_sample,
    make_example,
    parse_train_arg,
    per_group_sample,
    stratified_sample,
)
from app.llm.base import ExtractionRequest  # noqa: E402
from app.llm.llamacpp import LlamaCppBackend  # noqa: E402
from app.llm.prompt_tokens import PromptTokens  # noqa: E402
from app.llm.prompts import PROMPT_VERSION  # noqa: E402
from schemas.taxonomy import Taxonomy, load_taxonomy  # noqa: E402

pytestmark = pytest.mark.model

TINY_TAXONOMY = {
    "version": "tiny-1",
    "reasons": [
        {"code": "lost_card", "label": "lost card", "definition": "a card was lost or stolen"},
        {"code": "loan", "label": "loan", "definition": "questions about a loan"},
        {"code": "misc", "label": "misc", "definition": "anything else"},
    ],
}
# Every tiny call is a lost card: with a large learning rate the adapter learns that answer.
TINY_CALLS = [
    "Customer: I lost my card on the bus.",
    "Customer: My wallet was stolen with my card in it.",
    "Customer: Where is my card? I cannot find it anywhere.",
    "Customer: J'ai perdu ma carte hier soir.",
]
HELD_OUT = "Customer: Hello, I have a question about my mortgage."
DEFAULT_CALLS = [
    ("Customer: My Fibre 500 box drops every evening.", "breakdown", "Fibre 500"),
    ("Customer: I was charged twice this month.", "billing", None),
    ("Customer: Mon colis n'est jamais arrivé.", "delivery", None),
    ("Customer: How do I set up voicemail on the X2 phone?", "usage_help", "X2 phone"),
]
LORA_LAYERS = ("attn_q", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
RANK = 4


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("finetune")
    taxonomy = folder / "tiny.yaml"
    taxonomy.write_text(yaml.safe_dump(TINY_TAXONOMY), "utf-8")
    calls = [{"transcript": t, "reason": r, "product": p} for t, r, p in DEFAULT_CALLS]
    tiny = [{"text": t, "reason": "lost_card", "product": "card"} for t in TINY_CALLS]
    return {
        "folder": folder,
        "taxonomy": taxonomy,
        "calls": _write_jsonl(folder / "calls.jsonl", calls),
        "tiny": _write_jsonl(folder / "tiny.jsonl", tiny),
        "adapter": folder / "out" / "tiny.gguf",
    }


def _finetune(files: dict[str, Path], model_path: Path, *extra: str, exit_code: int = 0) -> str:
    args = [
        "finetune",
        "--train", str(files["calls"]),
        "--train", f"{files['tiny']}@{files['taxonomy']}",
        "--output", str(files["adapter"]),
        "--base-model", str(model_path),
        "--batch-size", "2",
        "--lr", "5e-3",
        "--rank", str(RANK),
        "--alpha", "8",
        "--checkpoint-every", "2",
        *extra,
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == exit_code, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def trained(files: dict[str, Path], model_path: Path) -> dict[str, Any]:
    """4 steps of 2 examples: one pass over the 8 examples."""
    output = _finetune(files, model_path, "--max-steps", "4")
    card = json.loads(files["adapter"].with_suffix(".json").read_text("utf-8"))
    return {"output": output, "card": card}


def test_the_adapter_is_a_llamacpp_lora_gguf(files: dict[str, Path], trained: Any) -> None:
    import gguf

    reader = gguf.GGUFReader(files["adapter"])
    fields = {name: field.contents() for name, field in reader.fields.items()}
    assert fields["general.type"] == "adapter"
    assert fields["general.architecture"] == "gemma3"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == pytest.approx(8.0)
    tensors = {t.name: t for t in reader.tensors}
    expected = {
        f"blk.{block}.{layer}.weight.lora_{part}"
        for block in range(18)
        for layer in LORA_LAYERS
        for part in "ab"
    }
    assert set(tensors) == expected
    # PEFT layout: A is (rank, in), B is (out, rank); Gemma 3 270M: hidden 640, q 4x256, ffn 2048.
    assert tensors["blk.0.attn_q.weight.lora_a"].data.shape == (RANK, 640)
    assert tensors["blk.0.attn_q.weight.lora_b"].data.shape == (1024, RANK)
    assert tensors["blk.5.ffn_down.weight.lora_a"].data.shape == (RANK, 2048)
    assert tensors["blk.5.ffn_down.weight.lora_b"].data.shape == (640, RANK)
    assert np.abs(tensors["blk.0.attn_q.weight.lora_b"].data).max() > 0  # B moved from zero


def test_the_model_card_says_how_the_adapter_was_made(
    files: dict[str, Path], model_path: Path, trained: Any
) -> None:
    card = trained["card"]
    assert card["callx_prompt_version"] == PROMPT_VERSION
    assert card["base_model"]["file"] == model_path.name
    assert len(card["base_model"]["sha256"]) == 64
    calls, tiny = card["training_files"]
    assert (calls["records"], calls["taxonomy_version"]) == (4, load_taxonomy().version)
    assert (tiny["records"], tiny["taxonomy_version"]) == (4, "tiny-1")
    assert tiny["reasons"] == {"lost_card": 4} and len(tiny["sha256"]) == 64
    assert card["taxonomies"]["trained"] == sorted([load_taxonomy().version, "tiny-1"])
    assert card["hyperparameters"]["rank"] == RANK and card["hyperparameters"]["lr"] == 5e-3
    assert card["steps"] == 4 and card["examples_seen"] == 8 and card["epochs"] == 1.0
    assert card["trainable_parameters"] > 0 and card["wall_s"] > 0
    assert card["device"].startswith(("cpu", "cuda"))
    assert len(card["loss_per_100_steps"]) == 1 and card["final_loss"] > 0
    assert card["created"][:2] == "20"


def _answer_logprob(
    model_path: Path, lora: Path | None, taxonomy: Taxonomy, text: str, answer: tuple
) -> float:
    """log P(answer | prompt) under llama.cpp, with or without the adapter."""
    from llama_cpp import Llama

    llm = Llama(
        str(model_path), n_ctx=512, n_threads=2, logits_all=True, verbose=False,
        lora_path=str(lora) if lora else None,
    )  # fmt: skip
    tokens = PromptTokens(
        lambda t, special, bos: llm.tokenize(t.encode(), add_bos=bos, special=special)
    )
    prompt, reply = tokens.prompt(taxonomy, text), tokens.answer(*answer)
    llm.eval(prompt + reply)
    scores = llm.scores[: llm.n_tokens]
    total = 0.0
    for offset, token in enumerate(reply):
        row = scores[len(prompt) + offset - 1].astype(np.float64)
        total += row[token] - (row.max() + np.log(np.exp(row - row.max()).sum()))
    return total


def test_the_backend_loads_the_adapter_and_it_changes_the_answers(
    files: dict[str, Path], model_path: Path, trained: Any
) -> None:
    tiny = load_taxonomy(files["taxonomy"])
    backend = LlamaCppBackend(model_path, lora_path=files["adapter"], n_ctx=512, n_threads=2)
    answer = backend.extract(ExtractionRequest(HELD_OUT, tiny))
    assert answer.answer.reason in tiny.codes
    assert backend.model.endswith("+tiny.gguf")
    # Trained to answer lost_card on every call of this taxonomy, even a loan question.
    base = _answer_logprob(model_path, None, tiny, HELD_OUT, ("card", "lost_card"))
    tuned = _answer_logprob(model_path, files["adapter"], tiny, HELD_OUT, ("card", "lost_card"))
    assert tuned > base + 1.0, (base, tuned)


def test_resume_continues_from_the_last_checkpoint(
    files: dict[str, Path], model_path: Path, trained: Any
) -> None:
    assert (files["folder"] / "out" / "tiny.gguf.ckpt" / "last.pt").is_file()
    output = _finetune(files, model_path, "--max-steps", "5", "--resume")
    assert "resuming from step 4" in output
    card = json.loads(files["adapter"].with_suffix(".json").read_text("utf-8"))
    assert card["steps"] == 5 and card["examples_seen"] == 10
    assert card["hyperparameters"]["planned_steps"] == 5
    assert len(card["loss_per_100_steps"]) == 1 and card["final_loss_steps"] == 5


def test_stop_after_steps_keeps_the_schedule_of_the_planned_run(
    files: dict[str, Path], model_path: Path, tmp_path: Path
) -> None:
    """What --max-minutes cut short at step N is replayed by --stop-after-steps N: the same
    steps under the same learning-rate schedule (planned for --max-steps)."""
    output = tmp_path / "cut.gguf"
    args = ("--max-steps", "4", "--stop-after-steps", "2", "--checkpoint-every", "50")
    _finetune({**files, "adapter": output}, model_path, *args)
    card = json.loads(output.with_suffix(".json").read_text("utf-8"))
    assert (card["steps"], card["stopped_by"]) == (2, "stop_after_steps")
    assert card["hyperparameters"]["planned_steps"] == 4
    assert card["hyperparameters"]["stop_after_steps"] == 2


def test_group_steps_is_recorded_and_a_checkpoint_resumes_only_with_it(
    files: dict[str, Path], model_path: Path, tmp_path: Path
) -> None:
    """--group-steps gives a step examples of one taxonomy (the two files here): recorded in
    the card and in the checkpoint's identity, so a resume without it is refused."""
    output = tmp_path / "grouped.gguf"
    grouped = {**files, "adapter": output}
    _finetune(grouped, model_path, "--max-steps", "2", "--group-steps")
    card = json.loads(output.with_suffix(".json").read_text("utf-8"))
    assert card["hyperparameters"]["group_steps"] is True and card["steps"] == 2
    refused = _finetune(grouped, model_path, "--max-steps", "3", "--resume", exit_code=2)
    assert "made with other training data or hyperparameters" in refused


def test_a_reason_outside_the_taxonomy_names_the_file_and_line(
    tmp_path: Path, model_path: Path
) -> None:
    tokens, _ = open_base_model(model_path)
    bad = _write_jsonl(
        tmp_path / "bad.jsonl",
        [{"text": "Customer: hi", "reason": "billing"}, {"text": "Customer: hi", "reason": "nope"}],
    )
    with pytest.raises(FinetuneError, match=r"bad\.jsonl:2: reason 'nope' is not a code"):
        build_examples([parse_train_arg(str(bad), None)], tokens)
    # The same file against a built-in taxonomy by name: `billing` is not an intents8 code.
    with pytest.raises(FinetuneError, match=r"bad\.jsonl:1: .* intents8"):
        build_examples([parse_train_arg(f"{bad}@intents8", None)], tokens)
    with pytest.raises(FinetuneError, match="neither a file nor a built-in name"):
        parse_train_arg(f"{bad}@no_such_taxonomy", None)


def test_a_training_file_in_either_spelling_gives_the_same_examples(
    tmp_path: Path, model_path: Path
) -> None:
    """callx's labelled files (`id`, `transcript`) and the API's records (`external_id`,
    `text`) are one format: the same examples; two spellings that differ name the line."""
    tokens, _ = open_base_model(model_path)
    callx = [{"id": f"c{n}", "transcript": t, "reason": r, "product": p}
             for n, (t, r, p) in enumerate(DEFAULT_CALLS)]  # fmt: skip
    api = [{"external_id": r["id"], "text": r["transcript"], "reason": r["reason"],
            "product": r["product"]} for r in callx]  # fmt: skip
    built = [
        build_examples([parse_train_arg(str(_write_jsonl(tmp_path / name, records)), None)], tokens)
        for name, records in (("callx.jsonl", callx), ("api.jsonl", api))
    ]
    assert built[0][0] == built[1][0]
    both = _write_jsonl(tmp_path / "both.jsonl", [{**callx[0], "text": "Customer: other"}])
    with pytest.raises(FinetuneError, match=r"both\.jsonl:1: `text` and `transcript`"):
        build_examples([parse_train_arg(str(both), None)], tokens)


def test_examples_hold_the_inference_tokens_and_score_only_the_answer(
    tmp_path: Path, model_path: Path
) -> None:
    tokens, _ = open_base_model(model_path)
    long_call = "\n".join(
        f"Customer: line {n} of a very long call about my X2 phone." for n in range(80)
    )
    records = [{"transcript": t, "reason": r, "product": p} for t, r, p in DEFAULT_CALLS]
    records.append({"transcript": long_call, "reason": "usage_help", "product": "X2 phone"})
    source = parse_train_arg(str(_write_jsonl(tmp_path / "calls.jsonl", records)), None)
    examples, summaries = build_examples([source], tokens, max_tokens=400, seed=3)
    assert (summaries[0].examples, summaries[0].truncated) == (5, 1)
    for example in examples:
        assert len(example.ids) <= 400
        first_scored = min(example.scored)
        prompt = list(example.ids[:first_scored])
        assert prompt[-len(tokens.answer_start) :] == tokens.answer_start
        # The forced `, "reason": "` tokens are not scored; the reason code's are.
        assert max(example.scored) == len(example.ids) - 1
        assert len(example.scored) < len(example.ids) - first_scored


def test_a_run_trains_on_the_file_sample_a_later_run_can_replay(
    files: dict[str, Path], model_path: Path, tmp_path: Path
) -> None:
    """`file_sample` names the records `--limit-per-file` kept, so a replay holds no others."""
    tokens, _ = open_base_model(model_path)
    records = [
        {"text": f"Customer: card number {n} is lost.", "reason": "lost_card"} for n in range(20)
    ]
    many = _write_jsonl(tmp_path / "many.jsonl", records)
    calls = parse_train_arg(str(files["calls"]), None)
    tiny = parse_train_arg(f"{many}@{files['taxonomy']}", None)
    examples, _ = build_examples([calls, tiny], tokens, limit_per_file=5, seed=5)
    kept = sorted(e.ids for e in examples if e.source == 1)
    sample = file_sample(records, 5, seed=5, index=1)
    assert len(sample) == 5
    expected = [make_example(tokens, tiny.taxonomy, r, DEFAULT_MAX_TOKENS, 1)[0] for r in sample]
    assert kept == sorted(e.ids for e in expected)


def test_limit_per_file_keeps_each_reasons_share() -> None:
    records = [{"reason": "a"}] * 60 + [{"reason": "b"}] * 30 + [{"reason": "c"}] * 10
    sample = stratified_sample(records, 10, random.Random(0))
    assert [r["reason"] for r in sample].count("a") == 6
    assert [r["reason"] for r in sample].count("b") == 3
    assert [r["reason"] for r in sample].count("c") == 1
    assert stratified_sample(records, 500, random.Random(0)) == records


def test_an_even_replay_takes_at_most_n_of_each_group_in_file_order() -> None:
    records = [{"id": n, "intent": "rare" if n % 10 == 0 else "common"} for n in range(100)]
    sample = per_group_sample(records, 5, random.Random("replay"), key=lambda r: r["intent"])
    assert [r["intent"] for r in sample].count("rare") == 5
    assert [r["intent"] for r in sample].count("common") == 5
    assert [r["id"] for r in sample] == sorted(r["id"] for r in sample)
    again = per_group_sample(records, 5, random.Random("replay"), key=lambda r: r["intent"])
    assert again == sample
    everything = per_group_sample(records, 200, random.Random(0), key=lambda r: r["intent"])
    assert everything == records


def test_init_adapter_starts_from_a_trained_adapter(
    files: dict[str, Path], model_path: Path, trained: Any, tmp_path: Path
) -> None:
    """--init-adapter: a new run (new data, new schedule) from a trained adapter's weights,
    recorded in its card. One step at a negligible learning rate writes the weights back
    unchanged."""
    import gguf

    from app.finetune.data import file_sha256

    init = files["adapter"]
    output = tmp_path / "continued.gguf"
    args = ("--max-steps", "1", "--lr", "1e-12", "--init-adapter", str(init))
    _finetune({**files, "adapter": output}, model_path, *args, "--checkpoint-every", "50")
    card = json.loads(output.with_suffix(".json").read_text("utf-8"))
    assert card["init_adapter"]["sha256"] == file_sha256(init)
    assert card["init_adapter"]["card"]["steps"] >= 4  # the trained adapter's own card
    assert trained["card"]["init_adapter"] is None

    def tensors(path: Path) -> dict[str, np.ndarray]:
        return {t.name: np.array(t.data) for t in gguf.GGUFReader(str(path)).tensors}

    before, after = tensors(init), tensors(output)
    assert before.keys() == after.keys() and len(before) == 2 * len(LORA_LAYERS) * 18
    assert all(np.array_equal(before[name], after[name]) for name in before)
    assert any(np.abs(t).max() > 0 for n, t in after.items() if n.endswith("lora_b"))

    # Another rank or alpha than the adapter's: a clear error, nothing trained.
    for option, value, message in (("--rank", "8", "has rank 4"), ("--alpha", "16", "alpha 8")):
        args = ["finetune", "--train", str(files["calls"]), "--output", str(tmp_path / "x.gguf"),
                "--base-model", str(model_path), "--rank", str(RANK), "--alpha", "8",
                "--max-steps", "1", "--init-adapter", str(init), option, value]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        said = " ".join(result.output.split())  # rich wraps long lines
        assert result.exit_code == 2 and message in said, result.output
        assert not (tmp_path / "x.gguf").exists()


def test_training_continues_from_a_blend_at_its_rank_and_alpha(
    files: dict[str, Path], model_path: Path, trained: Any, tmp_path: Path
) -> None:
    """A blend (callx models blend) is an adapter of summed rank and alpha = rank, which its
    card states for `callx improve`: a run starts from it with those."""
    from app.finetune.blend import blend_adapters
    from app.finetune.data import file_sha256

    blend = tmp_path / "blend.gguf"
    rank = blend_adapters([(files["adapter"], 0.5), (files["adapter"], 0.5)], blend)
    output = tmp_path / "from-blend.gguf"
    args = ("--max-steps", "1", "--lr", "1e-12", "--init-adapter", str(blend))
    shape = ("--rank", str(rank), "--alpha", str(rank), "--checkpoint-every", "50")
    _finetune({**files, "adapter": output}, model_path, *args, *shape)
    card = json.loads(output.with_suffix(".json").read_text("utf-8"))
    assert card["init_adapter"]["sha256"] == file_sha256(blend)
    assert (card["hyperparameters"]["rank"], rank) == (2 * RANK, 2 * RANK)


def test_a_shared_prompt_head_runs_once_with_the_same_loss_and_gradients(
    files: dict[str, Path], model_path: Path
) -> None:
    """Examples of one taxonomy share their prompt head; a micro-batch computes it once and
    repeats its keys and values. Loss and gradients must be those of running each example
    whole, also for a call longer than Gemma 3's 512-token sliding window."""
    import torch

    from app.finetune.batches import micro_batches
    from app.finetune.lora import add_lora, lora_parameters
    from app.finetune.model import answer_loss_sum, collate, load_base_model

    tokens, base = open_base_model(model_path)
    long_call = "\n".join(
        f"Customer: line {n} of a long call about my X2 phone." for n in range(60)
    )
    records = [{"transcript": t, "reason": r, "product": p} for t, r, p in DEFAULT_CALLS]
    records.append({"transcript": long_call, "reason": "usage_help", "product": "X2 phone"})
    calls = parse_train_arg(str(_write_jsonl(files["folder"] / "head.jsonl", records)), None)
    tiny = parse_train_arg(f"{files['tiny']}@{files['taxonomy']}", None)
    examples, _ = build_examples([calls, tiny], tokens, max_tokens=1024)
    heads = {e.source: e.ids[: e.head] for e in examples}
    assert heads[0] != heads[1] and all(e.ids[: e.head] == heads[e.source] for e in examples)
    assert all(0 < e.head < min(e.scored) for e in examples)
    assert max(len(e.ids) for e in examples) > 512

    batches = micro_batches(examples, batch_size=8, max_tokens=100_000)
    assert sorted(e.ids for b in batches for e in b) == sorted(e.ids for e in examples)
    assert all(len({e.source for e in b}) == 1 for b in batches)  # heads never mixed
    calls_by_length = sorted((e for e in examples if e.source == 0), key=lambda e: len(e.ids))
    batches.append([calls_by_length[-1], calls_by_length[0]])  # long and short together

    torch.manual_seed(0)
    model = load_base_model(model_path, base.n_vocab, torch.device("cpu"))
    layers = add_lora(model, RANK, 8.0)
    for layer in layers.values():  # B starts at zero: make the update count
        torch.nn.init.normal_(layer.lora_b, std=0.02)
    parameters = lora_parameters(layers)

    def whole_loss(batch: list[Any]) -> torch.Tensor:
        """Every example run whole, right-padded: the computation without a shared head."""
        width = max(len(e.ids) for e in batch)
        ids = torch.tensor([list(e.ids) + [0] * (width - len(e.ids)) for e in batch])
        hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state
        rows = [row for row, e in enumerate(batch) for _ in e.scored]
        positions = [i - 1 for e in batch for i in e.scored]
        logits = model.lm_head(hidden[rows, positions])  # Gemma 3: no final softcapping
        targets = ids[rows, [p + 1 for p in positions]]
        return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")

    assert model.config.final_logit_softcapping is None
    for batch in batches:
        model.zero_grad()
        expected = whole_loss(batch)
        expected.backward()
        expected_grads = [p.grad.clone() for p in parameters]
        model.zero_grad()
        shared = collate(batch, torch.device("cpu"))
        assert shared["head"].shape[1] >= batch[0].head  # at least the taxonomy's head
        loss = answer_loss_sum(model, shared)
        loss.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        for got, want in zip((p.grad for p in parameters), expected_grads, strict=True):
            # fp32 summation order only: measured up to 1.1e-4
            assert ((got - want).norm() / want.norm()).item() < 1e-3
