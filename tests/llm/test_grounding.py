"""The product kept to the call's words: what a partial name may and may not become."""

from __future__ import annotations

from app.llm.grounding import CallWords

CALL = "Client: bonjour, mon vélo Orbeo Edge 200 a un souci de freins, acheté chez Décathlon."


def test_a_name_made_of_the_calls_words_is_accepted_as_it_grows() -> None:
    words = CallWords(CALL)
    for partial in ("Or", "Orbeo", "Orbeo ", "Orbeo Ed", "Orbeo Edge 2", "vélo Orbeo Edge 200"):
        assert words.accepts(partial, complete=False), partial
    assert words.accepts("VELO orbeo edge 200", complete=True)  # case and accents folded
    assert words.accepts("Decathlon", complete=True)


def test_a_word_the_call_never_says_is_refused() -> None:
    words = CallWords(CALL)
    assert not words.accepts("Obeo", complete=False)  # no word of the call begins so
    assert not words.accepts("Orbeo Edge 300", complete=True)
    assert not words.accepts("Orb", complete=True)  # a beginning is not a word
    assert not words.accepts("Orb ", complete=False)
    assert words.accepts("", complete=True)
