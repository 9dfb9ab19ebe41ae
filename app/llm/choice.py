"""Choosing one of a few token sequences by the model's scores (a trie walk).

Used to pick the reason: only the taxonomy's codes can come out, and the probabilities the
model gives them, normalised over the allowed tokens, are the answer's confidence.

With a prior (the distributions the model gives at each branch when the call says nothing,
`ReasonPrior` in llamacpp.py), each allowed token's log-probability minus its prior's log decides
the walk instead: contextual calibration (Zhao et al., 2021), for lists the model is biased on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    label: str | None = None  # set on the node that ends a sequence


class TokenTrie:
    """The token sequences of a few labels; no sequence is a prefix of another."""

    def __init__(self, sequences: Mapping[str, Sequence[int]]) -> None:
        self.root = _Node()
        for label, tokens in sequences.items():
            if not tokens:
                raise ValueError(f"label {label!r} has no tokens")
            node = self.root
            for token in tokens:
                if node.label is not None:
                    raise ValueError(f"{node.label!r} is a token prefix of {label!r}")
                node = node.children.setdefault(token, _Node())
            if node.children or node.label is not None:
                raise ValueError(f"{label!r} is a token prefix of another label")
            node.label = label


# At each branch of a trie (its path from the root), the log of the prior probability of each
# allowed token, in the order choose() reads them.
Prior = Mapping[tuple[int, ...], np.ndarray]


@dataclass(frozen=True)
class Choice:
    label: str
    probability: float  # of this label among the allowed ones
    tokens: list[int]


def choose(
    trie: TokenTrie,
    logits: np.ndarray,
    feed: Callable[[list[int]], np.ndarray],
    prior: Prior | None = None,
) -> Choice:
    """Walk the trie greedily: at each node, the allowed token with the highest logit (with a
    prior: the highest log-probability less the prior's log).

    `logits` are the model's scores for the next token; `feed([token])` evaluates a token and
    returns the scores after it. A node with one child is taken without asking the model.
    """
    node, probability = trie.root, 1.0
    path: list[int] = []
    while node.label is None:
        tokens = list(node.children)
        if len(tokens) == 1:
            token = tokens[0]
        else:
            scores = logits[tokens].astype(np.float64)
            if prior is not None:
                scores = scores - scores.max()
                scores = scores - np.log(np.exp(scores).sum()) - prior[tuple(path)]
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
            best = int(np.argmax(weights))
            token, probability = tokens[best], probability * float(weights[best])
        path.append(token)
        node = node.children[token]
        if node.label is None:
            logits = feed([token])
    return Choice(node.label, probability if math.isfinite(probability) else 0.0, path)


def branch_distributions(
    trie: TokenTrie,
    logits: np.ndarray,
    feed_at: Callable[[int, list[int]], np.ndarray],
) -> dict[tuple[int, ...], np.ndarray]:
    """The model's distribution over the allowed tokens at every branch of the trie.

    `logits` are the scores at the root; `feed_at(depth, [token])` evaluates a token `depth`
    tokens after the root (dropping whatever was evaluated past that point) and returns the
    scores after it. Every path of the trie is walked, up to its last branch.
    """
    found: dict[tuple[int, ...], np.ndarray] = {}

    def walk(node: _Node, path: tuple[int, ...], logits: np.ndarray) -> None:
        tokens = list(node.children)
        if len(tokens) > 1:
            scores = logits[tokens].astype(np.float64)
            weights = np.exp(scores - scores.max())
            found[path] = weights / weights.sum()
        for token in tokens:
            child = node.children[token]
            if child.label is None:
                walk(child, path + (token,), feed_at(len(path), [token]))

    walk(trie.root, (), logits)
    return found
