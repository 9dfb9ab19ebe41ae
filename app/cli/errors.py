"""The errors a user makes or meets (a missing file, a bad setting, a server that is down), said
in a line or a few as `callx COMMAND: WHAT: WHERE` with exit code 2. Any other error is a bug:
Python shows its traceback."""

from __future__ import annotations

import sys
from typing import Any

from pydantic import ValidationError

from app.config import SettingsError
from app.errors import RequestError
from app.records import RecordFileError
from schemas.taxonomy import TaxonomyError

EXIT_USAGE = 2


class CliError(Exception):
    """An error whose message says everything: what is wrong, and where."""


def describe(exc: BaseException) -> str | None:
    """The message of an expected error; None for an unexpected one (a bug)."""
    if isinstance(exc, CliError | RecordFileError | TaxonomyError | SettingsError | RequestError):
        return str(exc)
    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return settings_problem(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    httpx = sys.modules.get("httpx")  # not imported: the error cannot be one of its own
    if httpx is not None and isinstance(exc, httpx.HTTPError):
        return http_problem(exc)
    return None


def settings_problem(exc: ValidationError) -> str:
    """Each invalid setting as its environment variable, its value and what is wrong."""
    lines = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:
            lines.append(f"invalid settings: {message}")
            continue
        name = "CALLX_" + "__".join(str(part).upper() for part in error["loc"])
        lines.append(f"invalid setting {name}={_shown(error.get('input'))}: {message}")
    return "\n".join(lines)


def http_problem(exc: Any) -> str:
    """An httpx error with the URL it was about."""
    import httpx

    try:
        url = str(exc.request.url)
    except RuntimeError:  # raised before any request was made
        return str(exc) or type(exc).__name__
    what = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TransportError):  # refused, timed out, DNS, TLS
        return f"cannot reach {url}: {what}"
    return f"{url}: {what}"


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."
