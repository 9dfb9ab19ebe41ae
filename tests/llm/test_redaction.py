"""PII redaction: what is replaced, what is left alone, and that the openai backend sends only
the redacted transcript to a remote endpoint (checked against a tiny local fake server).

Over 400 lines: most of it is the table of cases, one line each, French and English."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.config import OpenAISettings, Settings
from app.llm import redaction
from app.llm.base import ExtractionRequest
from app.llm.openai_compat import OpenAICompatBackend
from app.llm.redaction import iban_valid, is_remote_url, luhn_valid, redact
from schemas.taxonomy import load_taxonomy
from support.openai_stub import tool_call_completion

TAXONOMY = load_taxonomy()


def only(kind: str, n: int = 1) -> dict[str, int]:
    counts = {"email": 0, "iban": 0, "phone": 0, "card": 0}
    counts[kind] = n
    return counts


# --- e-mails ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mon adresse c'est jean.dupont@orange.fr, merci.", "Mon adresse c'est [EMAIL], merci."),
        ("écrivez à marie-hélène.lefèvre@laposte.net", "écrivez à [EMAIL]"),
        ("Send it to John.Smith+billing@mail.example.co.uk.", "Send it to [EMAIL]."),
        ("my email is j_doe42@gmail.com thanks", "my email is [EMAIL] thanks"),
    ],
)
def test_emails_are_redacted(text: str, expected: str) -> None:
    result = redact(text)
    assert result.text == expected
    assert result.counts == only("email")


# --- phones ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "06 12 34 56 78",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "0612345678",
        "01 44 55 66 77",
        "06\u00a012\u00a034\u00a056\u00a078",
        "+33 6 12 34 56 78",
        "+33612345678",
        "+33 (0)6 12 34 56 78",
        "+33 (0)1 44 55 66 77",
        "0033 6 12 34 56 78",
        "0033612345678",
        "+44 20 7946 0958",
        "+44 7700 900123",
        "+1 (415) 555-0132",
        "+1 415 555 0132",
        "+49 30 1234567",
        "+32 2 123 45 67",
        "020 7946 0958",
        "07700 900123",
        "(415) 555-0132",
        "415-555-0132",
    ],
)
def test_phone_numbers_are_redacted(number: str) -> None:
    for template in ("Rappelez-moi au {} s'il vous plaît.", "You can reach me on {}, thanks."):
        result = redact(template.format(number))
        assert result.text == template.format("[PHONE]"), number
        assert result.counts == only("phone")


def test_a_phone_number_followed_by_a_year_keeps_the_year() -> None:
    assert redact("call +44 20 7946 0958 2024").text == "call [PHONE] 2024"
    assert redact("Appelez le 06 12 34 56 78 12 fois").text == "Appelez le [PHONE] 12 fois"


# --- cards -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "4111 1111 1111 1111",  # Visa test number
        "4111-1111-1111-1111",
        "4111111111111111",
        "5555 5555 5555 4444",  # Mastercard
        "3782 822463 10005",  # Amex, 4-6-5
        "378282246310005",
        "3056 930902 5904",  # Diners, 4-6-4
        "6011 1111 1111 1117",  # Discover
        "4222222222222",  # 13 digits
        "6304 0000 0000 0000 018",  # 19 digits
    ],
)
def test_card_numbers_passing_luhn_are_redacted(number: str) -> None:
    assert luhn_valid(number.replace(" ", "").replace("-", ""))
    for template in ("Ma carte c'est le {}, elle expire en 2027.", "card number {} please"):
        result = redact(template.format(number))
        assert result.text == template.format("[CARD]"), number
        assert result.counts == only("card")


@pytest.mark.parametrize(
    "number", ["4111 1111 1111 1112", "4111111111111112", "1234 5678 9012 3456", "5555555555554445"]
)
def test_card_shaped_numbers_failing_luhn_are_kept(number: str) -> None:
    assert not luhn_valid(number.replace(" ", ""))
    text = f"le numéro {number} ne marche pas"
    assert redact(text).text == text


# --- IBANs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iban",
    [
        "FR76 3000 6000 0112 3456 7890 189",
        "FR7630006000011234567890189",
        "fr76 3000 6000 0112 3456 7890 189",
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "DE89 3704 0044 0532 0130 00",
        "BE68 5390 0754 7034",
    ],
)
def test_ibans_passing_mod97_are_redacted(iban: str) -> None:
    assert iban_valid(iban)
    for template in ("Mon IBAN est {} pour le prélèvement.", "my IBAN is {}, thanks"):
        result = redact(template.format(iban))
        assert result.text == template.format("[IBAN]"), iban
        assert result.counts == only("iban")


@pytest.mark.parametrize(
    "iban",
    [
        "FR76 3000 6000 0112 3456 7890 188",  # last digit changed
        "FR77 3000 6000 0112 3456 7890 189",  # check digits changed
        "GB82 WEST 1234 5698 7654 33",
        "GB82WEST12345698765431",
    ],
)
def test_ibans_with_a_wrong_checksum_are_kept(iban: str) -> None:
    assert not iban_valid(iban)
    text = f"IBAN {iban} refusé"
    result = redact(text)
    assert "[IBAN]" not in result.text
    assert result.counts["iban"] == 0
    assert iban.split(" ")[0] in result.text


def test_an_iban_of_the_wrong_length_for_its_country_is_not_valid() -> None:
    assert iban_valid("FR7630006000011234567890189")
    assert not iban_valid("FR76300060000112345678901")  # not 27 characters


# --- what must never be touched --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "La facture est de 49,99 euros, payée le 12/03/2024.",
        "Votre abonnement à 19.99 € depuis 2019, renouvelé le 12 mars 2024 à 14h30.",
        "Numéro de commande 12345678, colis 1234567, référence 123456.",
        "La box affiche le code erreur E18 puis E-0042.",
        "My order 87654321 of $1,299.00 arrived on 2024-03-15, not on 03/15/2024.",
        "We have 10 000 clients and 1 200 000 euros of revenue in 2023.",
        "Ticket #4521, error code 0x80070005, firmware 2.4.1, port 8080.",
        "Le forfait 5G 100 Go à 15 euros, rappel dans 48 heures, 3 mois offerts.",
        "Contract 2023-0456-78 and order FR-2024-1234.",
    ],
)
def test_ordinary_numbers_are_not_redacted(text: str) -> None:
    result = redact(text)
    assert result.text == text
    assert result.total == 0


def test_spelled_out_numbers_are_not_detected_as_documented() -> None:
    text = "mon numéro c'est zéro six douze trente-quatre cinquante-six soixante-dix-huit"
    assert redact(text).text == text
    assert "spelled out" in redaction.__doc__


# --- mixed text ------------------------------------------------------------------------------


def test_mixed_french_transcript() -> None:
    text = (
        "Client : Bonjour, je m'appelle Jean, mon mail c'est jean.dupont@orange.fr et mon "
        "portable le 06 12 34 56 78. J'ai été débité deux fois de 49,99 euros le 12/03/2024 "
        "sur ma carte 4970 1012 3456 7893, mon IBAN c'est FR76 3000 6000 0112 3456 7890 189. "
        "La box affiche E18 et ma commande 12345678 n'est pas arrivée.\n"
        "Conseiller : Je vous rappelle au +33 (0)6 12 34 56 78 ou par mail à jean.dupont@orange.fr."
    )
    result = redact(text)
    assert result.counts == {"email": 2, "iban": 1, "phone": 2, "card": 1}
    assert result.text == (
        "Client : Bonjour, je m'appelle Jean, mon mail c'est [EMAIL] et mon "
        "portable le [PHONE]. J'ai été débité deux fois de 49,99 euros le 12/03/2024 "
        "sur ma carte [CARD], mon IBAN c'est [IBAN]. "
        "La box affiche E18 et ma commande 12345678 n'est pas arrivée.\n"
        "Conseiller : Je vous rappelle au [PHONE] ou par mail à [EMAIL]."
    )


def test_mixed_english_transcript() -> None:
    text = (
        "Agent: Can I have your email? Customer: sure, it's john.smith@example.com, or call "
        "+44 20 7946 0958. I paid $49.99 with card 5555-5555-5555-4444 on 03/15/2024 and the "
        "refund should go to GB82 WEST 1234 5698 7654 32. Order 87654321, error E18."
    )
    result = redact(text)
    assert result.counts == {"email": 1, "iban": 1, "phone": 1, "card": 1}
    assert result.text == (
        "Agent: Can I have your email? Customer: sure, it's [EMAIL], or call "
        "[PHONE]. I paid $49.99 with card [CARD] on 03/15/2024 and the "
        "refund should go to [IBAN]. Order 87654321, error E18."
    )


def test_redaction_is_idempotent_and_leaves_clean_text_alone() -> None:
    text = "mail a@b.fr, tel 0612345678, carte 4111111111111111, IBAN GB82WEST12345698765432"
    once = redact(text)
    assert once.text == "mail [EMAIL], tel [PHONE], carte [CARD], IBAN [IBAN]"
    assert redact(once.text).text == once.text
    assert redact("").text == ""
    assert redact("").counts == {"email": 0, "iban": 0, "phone": 0, "card": 0}


# --- is the base URL remote? -----------------------------------------------------------------


def _no_dns(host: str) -> list[str]:
    raise OSError(f"no network in this test ({host})")


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080/v1",
        "http://LOCALHOST/v1",
        "http://127.0.0.1:1234/v1",
        "http://127.10.20.30/v1",
        "http://[::1]:8000/v1",
        "http://[::ffff:127.0.0.1]:8000/v1",
        "http://llm.localhost:8000/v1",
        "localhost:8080/v1",
    ],
)
def test_local_urls_are_recognised_without_a_lookup(url: str) -> None:
    assert is_remote_url(url, resolve=_no_dns) is False


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "https://api.mistral.ai/v1",
        "http://10.0.0.5:8000/v1",
        "http://192.168.1.20:11434/v1",
        "http://[2001:db8::1]:8000/v1",
        "http://0.0.0.0:8000/v1",
        "not a url at all",
        "",
    ],
)
def test_remote_or_unresolvable_urls_are_remote(url: str) -> None:
    assert is_remote_url(url, resolve=_no_dns) is True


def test_names_are_local_only_when_they_resolve_to_loopback_only() -> None:
    assert is_remote_url("http://llm-box:8000/v1", resolve=lambda h: ["127.0.1.1"]) is False
    assert is_remote_url("http://llm-box:8000/v1", resolve=lambda h: ["::1", "127.0.0.1"]) is False
    assert is_remote_url("http://llm-box/v1", resolve=lambda h: ["127.0.0.1", "10.1.1.1"]) is True
    assert is_remote_url("https://api.openai.com/v1", resolve=lambda h: ["162.159.140.245"])


def test_a_lookup_that_hangs_counts_as_remote() -> None:
    release = threading.Event()

    def slow(host: str) -> list[str]:
        release.wait(5)
        return ["127.0.0.1"]

    try:
        assert is_remote_url("http://slow-name/v1", resolve=slow, resolve_timeout_s=0.05)
    finally:
        release.set()


def test_api_openai_com_is_remote_with_the_real_resolver() -> None:
    # Offline it does not resolve (remote); online it resolves to public addresses (remote).
    assert is_remote_url("https://api.openai.com/v1", resolve_timeout_s=1.0) is True


# --- the backend sends the redacted transcript ----------------------------------------------


class FakeOpenAI:
    """A tiny OpenAI-compatible server: answers /chat/completions with a CallExtraction tool
    call, and records every request body it receives."""

    def __init__(self, arguments: str = '{"product": null, "reason": "billing"}') -> None:
        self.arguments = arguments
        self.bodies: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.raw.append(raw)
                owner.bodies.append(json.loads(raw))
                body = json.dumps(owner.completion()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def completion(self) -> dict[str, Any]:
        return tool_call_completion(self.arguments)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


PII_TRANSCRIPT = (
    "Client : mon mail c'est jean.dupont@orange.fr, ma carte 4111 1111 1111 1111 a été "
    "débitée de 49,99 euros, rappelez-moi au 06 12 34 56 78. IBAN FR76 3000 6000 0112 3456 "
    "7890 189."
)
ORIGINALS = (
    "jean.dupont@orange.fr",
    "4111 1111 1111 1111",
    "06 12 34 56 78",
    "FR76 3000 6000 0112 3456 7890 189",
)


def backend(url: str, redact_pii: str) -> OpenAICompatBackend:
    return OpenAICompatBackend(
        base_url=url, api_key="sk-test", model="fake-model", timeout_s=10, redact_pii=redact_pii
    )


def sent_text(server: FakeOpenAI) -> str:
    (body,) = server.bodies
    return json.dumps(body, ensure_ascii=False)


def test_backend_sends_the_redacted_transcript(fake_openai: FakeOpenAI) -> None:
    openai_backend = backend(fake_openai.url, "always")
    assert openai_backend.redacts and not openai_backend.is_remote
    request = ExtractionRequest(transcript=PII_TRANSCRIPT, taxonomy=TAXONOMY)
    answer = openai_backend.extract(request)
    assert answer.answer.reason == "billing" and answer.answer.product is None
    assert answer.prompt_tokens == 120 and answer.completion_tokens == 12
    assert request.transcript == PII_TRANSCRIPT  # the caller's (stored) text is untouched
    body = fake_openai.bodies[0]
    assert body["tools"][0]["function"]["name"] == "CallExtraction"
    content = body["messages"][-1]["content"]
    for placeholder in ("[EMAIL]", "[CARD]", "[PHONE]", "[IBAN]"):
        assert placeholder in content
    assert "49,99 euros" in content  # the rest of the call is sent as it is
    raw = b"".join(fake_openai.raw).decode()
    for original in ORIGINALS + ("jean.dupont", "4111111111111111", "0612345678"):
        assert original not in sent_text(fake_openai)
        assert original not in raw


def test_backend_sends_the_original_when_redaction_is_off(fake_openai: FakeOpenAI) -> None:
    for mode in ("never", "auto"):  # auto: the fake server is on this machine
        fake_openai.bodies.clear()
        openai_backend = backend(fake_openai.url, mode)
        assert not openai_backend.redacts
        openai_backend.extract(ExtractionRequest(transcript=PII_TRANSCRIPT, taxonomy=TAXONOMY))
        text = sent_text(fake_openai)
        assert all(original in text for original in ORIGINALS)
        assert "[EMAIL]" not in text


def test_auto_redacts_for_remote_base_urls_only() -> None:
    assert backend("https://api.openai.com/v1", "auto").redacts
    assert backend("https://api.openai.com/v1", "auto").is_remote
    assert not backend("https://api.openai.com/v1", "never").redacts
    assert not backend("http://localhost:8080/v1", "auto").redacts
    assert not backend("http://127.0.0.1:1234/v1", "auto").redacts
    assert not backend("http://[::1]:8000/v1", "auto").redacts
    assert backend("http://localhost:8080/v1", "always").redacts
    with pytest.raises(ValueError, match="redact_pii"):
        backend("http://localhost:8080/v1", "sometimes")


def test_redact_pii_setting_defaults_to_auto_and_reaches_the_backend() -> None:
    assert OpenAISettings().redact_pii == "auto"
    settings = Settings(
        openai={"base_url": "http://localhost:9/v1", "model": "m", "redact_pii": "always"}
    )
    assert OpenAICompatBackend.from_settings(settings).redacts
    settings = Settings(openai={"base_url": "https://api.openai.com/v1", "model": "m"})
    assert OpenAICompatBackend.from_settings(settings).redacts
    with pytest.raises(ValueError):
        OpenAISettings(redact_pii="sometimes")
