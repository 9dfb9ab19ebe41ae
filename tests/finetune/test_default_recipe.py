"""The files rebuild.sh derives for the default adapter's stages 3 and 4 keep the BANKING77 dev
records out and replay only records stage 1 trained on."""

from __future__ import annotations

import pytest

from app.finetune.data import file_sample
from app.finetune.default_recipe import STAGE1_LIMIT, derived_files


def _banking(n: int) -> list[dict]:
    return [
        {
            "external_id": f"train-{i:05d}",
            "transcript": f"Customer: request {i}",
            "reason": ["billing_payment", "usage_help", "breakdown_defect"][i % 3],
            "source_labels": {"category": f"intent_{i % 7}"},
        }
        for i in range(n)
    ]


def test_stage_files_hold_no_dev_record_and_replay_only_stage_1s_sample() -> None:
    b77 = _banking(STAGE1_LIMIT + 300)
    natcs = [{"external_id": f"dev-{i}", "reason": "other"} for i in range(500)]
    stage1 = {r["external_id"] for r in file_sample(b77, STAGE1_LIMIT, seed=0, index=0)}
    unseen = [r["external_id"] for r in b77 if r["external_id"] not in stage1]
    dev = set(unseen[:200])

    files = derived_files(b77, natcs, dev)

    replay, stage4 = files["b77-replay.jsonl"], files["b77-stage4.jsonl"]
    assert len(replay) == 300 and {r["external_id"] for r in replay} <= stage1
    stage4_ids = {r["external_id"] for r in stage4}
    assert dev.isdisjoint(stage4_ids)
    assert set(unseen[200:]) <= stage4_ids  # every record no sample held, dev excepted
    replayed = stage4_ids & stage1
    assert len(replayed) == 7 * 12  # 12 of each intent
    assert [r["external_id"] for r in stage4] == [
        r["external_id"] for r in b77 if r["external_id"] in stage4_ids
    ]
    assert files["natcs-300.jsonl"] == file_sample(natcs, 300, seed=0, index=4)


def test_a_dev_record_inside_stage_1s_sample_is_refused() -> None:
    b77 = _banking(STAGE1_LIMIT + 10)
    inside = file_sample(b77, STAGE1_LIMIT, seed=0, index=0)[0]["external_id"]
    with pytest.raises(ValueError, match="dev"):
        derived_files(b77, [], {inside})
