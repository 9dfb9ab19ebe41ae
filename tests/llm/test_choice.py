"""TokenTrie and choose(): only the allowed labels can come out, with a softmax probability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.llm.choice import Choice, TokenTrie, branch_distributions, choose

VOCAB = 32


def logits_with(scores: dict[int, float], default: float = -5.0) -> np.ndarray:
    logits = np.full(VOCAB, default, dtype=np.float32)
    for token, score in scores.items():
        logits[token] = score
    return logits


def softmax_of(scores: list[float], index: int) -> float:
    exps = [math.exp(s) for s in scores]
    return exps[index] / sum(exps)


class FakeFeed:
    """Records the tokens fed and returns scripted logits for each prefix."""

    def __init__(self, after: dict[int, np.ndarray] | None = None) -> None:
        self.after = after or {}
        self.calls: list[list[int]] = []

    def __call__(self, tokens: list[int]) -> np.ndarray:
        self.calls.append(list(tokens))
        return self.after[tokens[-1]]


# --- TokenTrie ------------------------------------------------------------------------------


def test_trie_rejects_a_label_that_is_a_prefix_of_a_later_one() -> None:
    with pytest.raises(ValueError, match="prefix"):
        TokenTrie({"bill": [3], "billing": [3, 4]})


def test_trie_rejects_a_label_that_is_a_prefix_of_an_earlier_one() -> None:
    with pytest.raises(ValueError, match="prefix"):
        TokenTrie({"billing": [3, 4], "bill": [3]})


def test_trie_rejects_two_labels_with_the_same_tokens() -> None:
    with pytest.raises(ValueError, match="prefix"):
        TokenTrie({"a": [1, 2], "b": [1, 2]})


def test_trie_rejects_a_label_without_tokens() -> None:
    with pytest.raises(ValueError, match="no tokens"):
        TokenTrie({"a": [1], "empty": []})


def test_trie_accepts_labels_sharing_a_prefix() -> None:
    trie = TokenTrie({"ab": [1, 2], "ac": [1, 3], "d": [4]})
    assert set(trie.root.children) == {1, 4}
    assert set(trie.root.children[1].children) == {2, 3}
    assert trie.root.children[1].children[3].label == "ac"
    assert trie.root.children[4].label == "d"


# --- choose ---------------------------------------------------------------------------------


def test_choose_picks_the_allowed_token_with_the_highest_logit() -> None:
    trie = TokenTrie({"billing": [5], "delivery": [9], "other": [2]})
    feed = FakeFeed()
    logits = logits_with({5: 1.0, 9: 3.0, 2: 0.5})
    choice = choose(trie, logits, feed)
    assert choice.label == "delivery"
    assert choice.tokens == [9]
    assert choice.probability == pytest.approx(softmax_of([1.0, 3.0, 0.5], 1), rel=1e-6)
    assert feed.calls == []  # a single-token label needs no further evaluation


def test_choose_never_returns_a_forbidden_token_even_when_it_scores_highest() -> None:
    trie = TokenTrie({"billing": [5], "delivery": [9]})
    logits = logits_with({5: 0.0, 9: -1.0, 0: 50.0, 31: 40.0})
    choice = choose(trie, logits, FakeFeed())
    assert choice.label == "billing"
    assert choice.tokens == [5]
    assert choice.tokens[0] not in (0, 31)
    # the probability is normalised over the allowed tokens only, not the whole vocabulary
    assert choice.probability == pytest.approx(softmax_of([0.0, -1.0], 0), rel=1e-6)
    assert choice.probability > 0.5


def test_choose_follows_multi_token_paths_and_calls_feed() -> None:
    trie = TokenTrie({"usage_help": [7, 11], "usage_other": [7, 12], "billing": [5]})
    first = logits_with({7: 2.0, 5: 1.0})
    after_7 = logits_with({11: -1.0, 12: 1.5, 0: 99.0})
    feed = FakeFeed({7: after_7})
    choice = choose(trie, first, feed)
    assert choice == Choice(
        label="usage_other",
        probability=pytest.approx(softmax_of([2.0, 1.0], 0) * softmax_of([-1.0, 1.5], 1)),
        tokens=[7, 12],
    )
    assert feed.calls == [[7]]


def test_choose_takes_a_single_child_without_scoring_it() -> None:
    # "delivery" is [8, 20, 21]: after 8 there is only one way on
    trie = TokenTrie({"delivery": [8, 20, 21], "billing": [5]})
    first = logits_with({8: 4.0, 5: 0.0})
    # after 8 the model prefers a forbidden token; the only allowed child is still taken
    after_8 = logits_with({20: -30.0, 3: 10.0})
    after_20 = logits_with({21: -30.0, 4: 10.0})
    feed = FakeFeed({8: after_8, 20: after_20})
    choice = choose(trie, first, feed)
    assert choice.label == "delivery"
    assert choice.tokens == [8, 20, 21]
    assert feed.calls == [[8], [20]]
    # only the first branching step contributes to the probability
    assert choice.probability == pytest.approx(softmax_of([4.0, 0.0], 0), rel=1e-6)


def test_choose_with_a_single_label_is_certain() -> None:
    trie = TokenTrie({"other": [3]})
    choice = choose(trie, logits_with({3: -100.0, 1: 100.0}), FakeFeed())
    assert choice == Choice("other", 1.0, [3])


@pytest.mark.parametrize("seed", range(10))
def test_probability_is_in_unit_interval_and_matches_softmax(seed: int) -> None:
    rng = np.random.default_rng(seed)
    allowed = [2, 6, 11, 17, 23, 29, 30]
    trie = TokenTrie({f"code{t}": [t] for t in allowed})
    logits = rng.normal(0, 10, VOCAB).astype(np.float32)
    choice = choose(trie, logits, FakeFeed())
    scores = [float(logits[t]) for t in allowed]
    best = int(np.argmax(scores))
    assert choice.tokens == [allowed[best]]
    assert choice.label == f"code{allowed[best]}"
    assert 0.0 < choice.probability <= 1.0
    assert choice.probability >= 1 / len(allowed)  # the argmax has at least a uniform share
    assert choice.probability == pytest.approx(softmax_of(scores, best), rel=1e-5)


def test_probability_is_stable_for_huge_logits() -> None:
    trie = TokenTrie({"a": [1], "b": [2]})
    choice = choose(trie, logits_with({1: 1e4, 2: 1e4 - 1.0}), FakeFeed())
    assert choice.label == "a"
    assert 0.0 < choice.probability <= 1.0
    assert choice.probability == pytest.approx(1 / (1 + math.exp(-1.0)), rel=1e-6)


# --- the prior taken out (contextual calibration) -------------------------------------------


def test_a_prior_takes_the_head_start_of_a_favoured_code_away() -> None:
    trie = TokenTrie({"a": [1], "b": [2], "c": [3]})
    logits = logits_with({1: 3.0, 2: 2.5, 3: 0.0})
    assert choose(trie, logits, FakeFeed()).label == "a"
    # The model gives "a" 0.7 when the call says nothing: its 3.0 is mostly that head start.
    prior = {(): np.log(np.array([0.7, 0.2, 0.1]))}
    choice = choose(trie, logits, FakeFeed(), prior)
    scores = np.array([3.0, 2.5, 0.0])
    corrected = scores - np.log(np.exp(scores).sum()) - prior[()]
    assert choice.label == "b" and choice.tokens == [2]
    assert choice.probability == pytest.approx(softmax_of(list(corrected), 1), rel=1e-6)


def test_a_uniform_prior_changes_nothing() -> None:
    trie = TokenTrie({"usage_help": [7, 11], "usage_other": [7, 12], "billing": [5]})
    first = logits_with({7: 2.0, 5: 1.0})
    feed = FakeFeed({7: logits_with({11: -1.0, 12: 1.5})})
    uniform = {(): np.log(np.full(2, 0.5)), (7,): np.log(np.full(2, 0.5))}
    assert choose(trie, first, feed, uniform) == choose(trie, first, feed)


def test_a_prior_applies_at_every_branch_of_a_path() -> None:
    trie = TokenTrie({"usage_help": [7, 11], "usage_other": [7, 12], "billing": [5]})
    first = logits_with({7: 2.0, 5: 1.0})
    feed = FakeFeed({7: logits_with({11: 1.0, 12: 1.5})})
    prior = {(): np.log(np.array([0.5, 0.5])), (7,): np.log(np.array([0.1, 0.9]))}
    assert choose(trie, first, feed).label == "usage_other"
    assert choose(trie, first, feed, prior).label == "usage_help"


def test_branch_distributions_walks_every_branch_and_rewinds_to_its_depth() -> None:
    trie = TokenTrie(
        {"delivery": [8, 20, 21], "delivery_late": [8, 20, 22], "billing": [5], "bill2": [6]}
    )
    root = logits_with({8: 1.0, 5: 2.0, 6: 0.0})
    after = {8: logits_with({20: 0.0}), 20: logits_with({21: 1.0, 22: -1.0})}
    fed: list[tuple[int, list[int]]] = []

    def feed_at(depth: int, tokens: list[int]) -> np.ndarray:
        fed.append((depth, list(tokens)))
        return after[tokens[-1]]

    found = branch_distributions(trie, root, feed_at)
    assert set(found) == {(), (8, 20)}
    exps = np.exp([1.0, 2.0, 0.0])
    assert found[()] == pytest.approx(exps / exps.sum())
    assert found[(8, 20)] == pytest.approx([softmax_of([1.0, -1.0], 0), softmax_of([1.0, -1.0], 1)])
    # Through the single child at depth 1, and never into a leaf.
    assert fed == [(0, [8]), (1, [20])]


def test_branch_distributions_rewinds_between_branching_siblings() -> None:
    trie = TokenTrie({"a_x": [1, 3], "a_y": [1, 4], "b_x": [2, 3], "b_y": [2, 5]})
    root = logits_with({1: 0.0, 2: 0.0})
    after = {1: logits_with({3: 2.0, 4: 0.0}), 2: logits_with({3: 0.0, 5: 1.0})}
    fed: list[tuple[int, list[int]]] = []

    def feed_at(depth: int, tokens: list[int]) -> np.ndarray:
        fed.append((depth, list(tokens)))
        return after[tokens[-1]]

    found = branch_distributions(trie, root, feed_at)
    assert fed == [(0, [1]), (0, [2])]  # each sibling from the root's depth
    assert found[(1,)] == pytest.approx([softmax_of([2.0, 0.0], 0), softmax_of([2.0, 0.0], 1)])
    assert found[(2,)] == pytest.approx([softmax_of([0.0, 1.0], 0), softmax_of([0.0, 1.0], 1)])
