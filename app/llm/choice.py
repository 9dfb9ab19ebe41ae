"""Choosing one of a few token sequences by the model's scores (a trie walk).

Used to pick the reason: only the taxonomy's codes can come out, and the probabilities the
model gives them, normalised over the allowed tokens, are the answer's confidence.
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


@dataclass(frozen=True)
class Choice:
    label: str
    probability: float  # of this label among the allowed ones
    tokens: list[int]


def choose(trie: TokenTrie, logits: np.ndarray, feed: Callable[[list[int]], np.ndarray]) -> Choice:
    """Walk the trie greedily: at each node, the allowed token with the highest logit.

    `logits` are the model's scores for the next token; `feed([token])` evaluates a token and
    returns the scores after it. A node with one child is taken without asking the model.
    """
    node, probability, path = trie.root, 1.0, []
    while node.label is None:
        tokens = list(node.children)
        if len(tokens) == 1:
            token = tokens[0]
        else:
            scores = logits[tokens].astype(np.float64)
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
            best = int(np.argmax(weights))
            token, probability = tokens[best], probability * float(weights[best])
        path.append(token)
        node = node.children[token]
        if node.label is None:
            logits = feed([token])
    return Choice(node.label, probability if math.isfinite(probability) else 0.0, path)
