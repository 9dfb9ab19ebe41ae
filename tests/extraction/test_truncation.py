"""fit_transcript: keep the head and the tail of a long call around a marker."""

from __future__ import annotations

import pytest

from app.extraction.truncation import MARKER, Fitted, fit_transcript


def count_words(text: str) -> int:
    return len(text.split())


MARKER_TOKENS = count_words(MARKER)


def call_with_turns(turns: int) -> str:
    lines = []
    for i in range(turns):
        speaker = "agent" if i % 2 == 0 else "client"
        lines.append(f"{speaker}: turn{i} lorem ipsum dolor sit")
    return "\n".join(lines)


def test_text_that_fits_is_returned_unchanged() -> None:
    text = call_with_turns(5)
    fitted = fit_transcript(text, count_words(text), count_words)
    assert fitted == Fitted(text=text, truncated=False, tokens=count_words(text))


def test_text_well_under_budget_is_unchanged() -> None:
    fitted = fit_transcript("hello there", 1000, count_words)
    assert fitted.text == "hello there"
    assert fitted.truncated is False
    assert fitted.tokens == 2


@pytest.mark.parametrize("budget", [MARKER_TOKENS + 10, 60, 150, 400])
def test_long_text_is_cut_to_fit_with_head_marker_and_tail(budget: int) -> None:
    text = call_with_turns(300)  # 1800 words
    fitted = fit_transcript(text, budget, count_words)
    assert fitted.truncated is True
    assert fitted.tokens <= budget
    assert fitted.tokens == count_words(fitted.text)
    assert fitted.text.count(MARKER) == 1
    head, _, tail = fitted.text.partition(MARKER)
    assert head and tail
    assert text.startswith(head)
    assert text.endswith(tail)
    assert head.startswith("agent: turn0 ")
    assert tail.endswith("client: turn299 lorem ipsum dolor sit")
    # something was actually removed from the middle
    assert len(head) + len(tail) < len(text)


def test_cut_is_on_turn_boundaries_when_possible() -> None:
    text = call_with_turns(300)
    fitted = fit_transcript(text, 200, count_words)
    head, _, tail = fitted.text.partition(MARKER)
    turns = set(text.split("\n"))
    assert all(line in turns for line in head.split("\n"))
    assert all(line in turns for line in tail.split("\n"))


def test_text_without_newlines_is_still_cut_head_and_tail() -> None:
    text = "BEGIN " + " ".join(f"w{i}" for i in range(2000)) + " FINISH"
    fitted = fit_transcript(text, 100, count_words)
    assert fitted.truncated is True
    assert fitted.tokens <= 100
    head, _, tail = fitted.text.partition(MARKER)
    assert head.startswith("BEGIN w0 w1")
    assert tail.endswith("w1999 FINISH")


@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.5, 0.8])
def test_keep_head_ratio_is_roughly_respected(ratio: float) -> None:
    text = call_with_turns(1000)  # short turns: line cuts barely move the split
    budget = 600
    fitted = fit_transcript(text, budget, count_words, keep_head_ratio=ratio)
    head, _, tail = fitted.text.partition(MARKER)
    head_words, tail_words = count_words(head), count_words(tail)
    assert fitted.tokens <= budget
    assert head_words / (head_words + tail_words) == pytest.approx(ratio, abs=0.05)
    # the budget is used rather than wasted
    assert fitted.tokens >= budget * 0.7


def test_more_head_ratio_keeps_more_of_the_beginning() -> None:
    text = call_with_turns(500)
    small = fit_transcript(text, 300, count_words, keep_head_ratio=0.2)
    large = fit_transcript(text, 300, count_words, keep_head_ratio=0.8)
    small_head = small.text.partition(MARKER)[0]
    large_head = large.text.partition(MARKER)[0]
    assert len(large_head) > len(small_head)
    assert large_head.startswith(small_head)


@pytest.mark.parametrize("budget", [0, 1, MARKER_TOKENS - 1, MARKER_TOKENS])
def test_budget_too_small_for_the_marker_raises_value_error(budget: int) -> None:
    text = call_with_turns(100)
    with pytest.raises(ValueError, match="no room"):
        fit_transcript(text, budget, count_words)


def test_marker_is_a_visible_separate_block() -> None:
    assert MARKER.startswith("\n") and MARKER.endswith("\n")
    assert "removed" in MARKER
