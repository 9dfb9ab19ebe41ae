"""PII redaction of transcripts before they leave this machine (French and English calls).

`redact(text)` replaces, with typed placeholders:

- e-mail addresses -> ``[EMAIL]`` (``jean.dupont@orange.fr``, ``a.b+tag@mail.example.co.uk``);
- IBANs -> ``[IBAN]``: two letters, two check digits and 11-30 letters or digits, written in
  one block or in groups of four separated by spaces (any case). Only those that pass the
  ISO 13616 mod-97 check, and have their country's length where the country is known;
- phone numbers -> ``[PHONE]``:
  French national numbers, ``06 12 34 56 78``, ``06.12.34.56.78``, ``06-12-34-56-78``,
  ``0612345678``; international numbers with ``+`` or ``00``, ``+33 6 12 34 56 78``,
  ``+33 (0)6 12 34 56 78``, ``0033 6 12 34 56 78``, ``+44 20 7946 0958``,
  ``+1 (415) 555-0132``, ``+49 30 1234567`` (8 to 15 digits, as in E.164); national numbers
  starting with 0 of 10 or 11 digits in groups (``020 7946 0958``, ``07700 900123``); North
  American numbers written with separators (``(415) 555-0132``, ``415-555-0132``);
- payment card numbers -> ``[CARD]``: 13 to 19 digits, in one block, in groups of four
  separated by spaces or dashes, or grouped 4-6-5 / 4-6-4 (Amex, Diners), not starting with 0.
  Only numbers that pass the Luhn check (a 13-19 digit reference that happens to pass it is
  redacted too: about one in ten).

Not redacted, on purpose: amounts (``49,99 euros``, ``$1,299.00``), dates (``12/03/2024``,
``12 mars 2024``), years, times, order and reference numbers without a phone or card shape
(``commande 12345678``), error codes (``E18``), numbers that fail their checksum.

Not detected (known limits):
- numbers spelled out in words, as some speech recognisers write them ("zéro six douze
  trente-quatre...", "four one one one..."), or digits dictated one by one with spaces;
- e-mail addresses spoken aloud ("jean point dupont arobase gmail point com", "at", "dot");
- phone numbers without any country or trunk prefix shape (a bare ``612345678``), and foreign
  national formats other than those above;
- names, postal addresses, dates of birth, customer ids and other identifiers.

`redact` is pure and deterministic: same text in, same text out; no network, no state.
`is_remote_url(base_url)` tells whether a backend URL points off this machine (the openai
backend's ``redact_pii="auto"`` redacts only then).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
CARD = "[CARD]"
IBAN = "[IBAN]"
KINDS = ("email", "iban", "phone", "card")


@dataclass(frozen=True)
class Redacted:
    """The redacted text and how many values of each kind were replaced."""

    text: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# A separator inside a number: space (also non-breaking ones), dot or dash.
_SEP = r"[ .\-\u00a0\u202f]"

_EMAIL_RE = re.compile(r"(?<![\w.+\-])[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{2,24}(?![\w\-])")

_IBAN_RE = re.compile(
    r"(?<![\w])[A-Za-z]{2}\d{2}"
    r"(?:[A-Za-z0-9]{11,30}|(?:[ \u00a0][A-Za-z0-9]{4}){2,7}(?:[ \u00a0][A-Za-z0-9]{1,3})?)"
    r"(?![\w])"
)

_PHONE_RES = (
    # International: + or 00, a country code, then groups; "(0)" trunk prefix allowed.
    re.compile(
        rf"(?<![\w+])(?:\+|00){_SEP}?[1-9]\d{{0,2}}"
        rf"(?:{_SEP}{{0,2}}(?:\(\d{{1,4}}\)|\d{{1,5}})){{1,7}}(?![\w])"
    ),
    # French national: 0X XX XX XX XX (or without separators).
    re.compile(rf"(?<![\w+])0[1-9](?:{_SEP}?\d{{2}}){{4}}(?![\w])"),
    # Other national numbers with a trunk 0 (UK...): 10-11 digits in 2-4 groups.
    re.compile(rf"(?<![\w+])0\d{{2,4}}(?:{_SEP}\d{{3,6}}){{1,3}}(?![\w])"),
    # North American, separators required: (415) 555-0132, 415-555-0132, 415.555.0132.
    re.compile(r"(?<![\w+])(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .\-])[2-9]\d{2}[ .\-]\d{4}(?![\w])"),
)

_CARD_RE = re.compile(
    r"(?<![\w+])[1-9](?:"
    r"\d{12,18}"
    r"|\d{3}(?:[ \-]\d{4}){2,3}(?:[ \-]\d{1,3})?"
    r"|\d{3}[ \-]\d{6}[ \-]\d{4,5}"
    r")(?![\w])"
)

# Length of the IBAN by country (ISO 13616 registry); others: 15-34 with a valid checksum.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a payment card number, given as digits only."""
    if not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """The ISO 13616 mod-97 check, and the country's length where it is known."""
    compact = re.sub(r"\s", "", iban).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _phone_valid(candidate: str) -> bool:
    digits = _digits(candidate.replace("(0)", ""))
    if candidate.startswith(("+", "00")):
        digits = digits[2:] if candidate.startswith("00") else digits
        return 8 <= len(digits) <= 15
    if candidate.startswith("0") and not candidate.startswith("("):
        return len(digits) in (10, 11)
    return len(digits) == 10


def _card_valid(candidate: str) -> bool:
    digits = _digits(candidate)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _longest_valid(candidate: str, valid: Callable[[str], bool]) -> str | None:
    """The longest prefix of `candidate`, cut at a separator, that passes `valid`."""
    cuts = [m.start() for m in re.finditer(rf"{_SEP}+", candidate)] + [len(candidate)]
    for end in reversed(cuts):
        if valid(candidate[:end]):
            return candidate[:end]
    return None


def _replace(
    text: str,
    pattern: re.Pattern[str],
    placeholder: str,
    valid: Callable[[str], bool] | None,
) -> tuple[str, int]:
    count = 0

    def substitute(match: re.Match[str]) -> str:
        nonlocal count
        value = match.group(0)
        if valid is None:
            count += 1
            return placeholder
        kept = _longest_valid(value, valid)
        if kept is None:
            return value
        count += 1
        return placeholder + value[len(kept) :]

    return pattern.sub(substitute, text), count


def redact(text: str) -> Redacted:
    """Replace e-mails, IBANs, card numbers and phone numbers with typed placeholders.

    Order matters: e-mails first (they may hold digits), IBANs before cards and phones (their
    digits would look like either), cards before phones (a card's groups could look like a
    phone's); card numbers never start with 0, so ``0033612345678`` stays a phone.
    """
    counts = dict.fromkeys(KINDS, 0)
    text, counts["email"] = _replace(text, _EMAIL_RE, EMAIL, None)
    text, counts["iban"] = _replace(text, _IBAN_RE, IBAN, iban_valid)
    text, counts["card"] = _replace(text, _CARD_RE, CARD, _card_valid)
    for pattern in _PHONE_RES:
        text, found = _replace(text, pattern, PHONE, _phone_valid)
        counts["phone"] += found
    return Redacted(text=text, counts=counts)


# --- Where a base URL points: this machine, or elsewhere -----------------------------------


def _resolve(host: str) -> Sequence[str]:
    """The addresses `host` resolves to (the system resolver: /etc/hosts first)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, None)]


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def is_remote_url(
    url: str,
    *,
    resolve: Callable[[str], Sequence[str]] = _resolve,
    resolve_timeout_s: float = 2.0,
) -> bool:
    """Whether `url` points off this machine (then transcripts sent there are redacted).

    Local: ``localhost`` and ``*.localhost``, 127.0.0.0/8, ``::1`` (and ``::ffff:127.x``),
    and a name that resolves only to loopback addresses. Literal hosts are decided without
    any lookup; other names are resolved (bounded by `resolve_timeout_s`), and a name that
    does not resolve in time, or at all, counts as remote. So do unparsable URLs.
    """
    target = url if "://" in url else "http://" + url
    try:
        host = urlsplit(target).hostname
    except ValueError:
        return True
    if not host:
        return True
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        return not _is_loopback(host)
    addresses = _resolve_bounded(host, resolve, resolve_timeout_s)
    return not addresses or not all(_is_loopback(a) for a in addresses)


def _resolve_bounded(
    host: str, resolve: Callable[[str], Sequence[str]], timeout_s: float
) -> Sequence[str]:
    found: list[str] = []

    def run() -> None:
        try:
            found.extend(resolve(host))
        except (OSError, UnicodeError, ValueError):
            pass

    worker = threading.Thread(target=run, name="callx-resolve", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return [] if worker.is_alive() else list(found)
