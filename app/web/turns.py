"""A transcript shown as turns: `Speaker: words` lines, as call-centre systems write them."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A speaker's name: a word or two before a colon at the start of a line ("Agent:", "Client :",
# "Customer service:"), not a time ("10:30") or a URL.
_SPEAKER = re.compile(r"^\s*([^\W\d][\w'’.-]*(?: [\w'’.-]+){0,2})\s?:\s+(.*)$")


@dataclass(frozen=True)
class Turn:
    speaker: str | None  # None: text with no speaker (a transcript without turns)
    text: str
    side: int  # 0 for the first speaker, 1 for the others: the two columns of a chat


def split_turns(text: str) -> list[Turn]:
    turns: list[Turn] = []
    first: str | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _SPEAKER.match(line)
        if match is None:
            if turns:  # a turn that goes on over several lines
                last = turns[-1]
                turns[-1] = Turn(last.speaker, last.text + "\n" + line.strip(), last.side)
            else:
                turns.append(Turn(None, line.strip(), 0))
            continue
        speaker, words = match.group(1), match.group(2)
        first = first or speaker
        turns.append(Turn(speaker, words, 0 if speaker == first else 1))
    return turns
