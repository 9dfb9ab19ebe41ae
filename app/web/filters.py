"""The console's filters, read from a page's query string: an empty field means any, and a
bad value is said next to its field (the page still answers, with nothing filtered by it)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.datastructures import QueryParams

from app.db.results import REVIEW_STATES, ExtractionFilter
from schemas.api import normalize_source
from schemas.taxonomy import Taxonomy

BUCKETS = ("day", "week", "month")
# Dates the filters take (a range of centuries would only draw empty bars), and at most this
# many bars in the chart: a longer range is shown per week, then per month.
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2099, 12, 31)
MAX_BARS = 400
_DAYS_PER_BAR = {"day": 1, "week": 7, "month": 30.4}
STATUSES = ("succeeded", "failed")
DEFAULT_DAYS = 30
_LANGUAGE = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})?$")


@dataclass
class Form:
    """The values as typed (to show them back) and what was wrong with them, per field."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def text(self, params: QueryParams, name: str, limit: int = 200) -> str | None:
        value = params.get(name, "").strip()
        self.values[name] = value
        if len(value) > limit:
            self.errors[name] = f"at most {limit} characters"
            return None
        return value or None

    def day(self, params: QueryParams, name: str) -> date | None:
        value = self.text(params, name, 10)
        if value is None:
            return None
        try:
            day = date.fromisoformat(value)
        except ValueError:
            self.errors[name] = f"{value!r} is not a date (YYYY-MM-DD)"
            return None
        if not FIRST_DAY <= day <= LAST_DAY:
            self.errors[name] = f"{value} is not between {FIRST_DAY} and {LAST_DAY}"
            return None
        return day

    def choice(self, params: QueryParams, name: str, choices: tuple[str, ...]) -> str | None:
        value = self.text(params, name, 64)
        if value is not None and value not in choices:
            self.errors[name] = f"{value!r} is not one of {', '.join(choices)}"
            return None
        return value

    def fraction(self, params: QueryParams, name: str) -> float | None:
        value = self.text(params, name, 20)
        if value is None:
            return None
        try:
            number = float(value.replace(",", "."))
        except ValueError:
            number = -1.0
        if not 0 <= number <= 1:
            self.errors[name] = f"{value!r} is not a number between 0 and 1"
            return None
        return number

    def query(self, **extra: Any) -> str:
        """The filter as a query string (for links: next page, CSV, a bar's calls)."""
        from urllib.parse import urlencode

        values = {k: v for k, v in {**self.values, **extra}.items() if v not in (None, "")}
        return urlencode(values)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def date_range(form: Form, params: QueryParams, today: date) -> tuple[datetime, datetime]:
    """`from` and `to` (both days included, UTC); the last 30 days when absent."""
    first = form.day(params, "from")
    last = form.day(params, "to")
    if last is None:
        last = today
    if first is None:
        first = last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        form.errors["from"] = "must not be after the end"
        first = last - timedelta(days=DEFAULT_DAYS - 1)
    # The fields show the range the page shows, defaults included.
    form.values["from"], form.values["to"] = first.isoformat(), last.isoformat()
    return _midnight(first), _midnight(last + timedelta(days=1))


@dataclass(frozen=True)
class OverviewFilter:
    since: datetime
    until: datetime
    source: str | None
    bucket: str
    coarsened_from: str | None = None  # the bucket asked for, where the range was too long


def overview_filter(params: QueryParams, today: date) -> tuple[OverviewFilter, Form]:
    form = Form()
    since, until = date_range(form, params, today)
    source = form.text(params, "source", 100)
    asked = form.choice(params, "bucket", BUCKETS) or "day"
    bucket = asked
    days = (until - since).days
    for coarser in BUCKETS[BUCKETS.index(asked) :]:
        bucket = coarser
        if days / _DAYS_PER_BAR[coarser] <= MAX_BARS:
            break
    else:
        form.errors["from"] = f"at most {MAX_BARS} months at once"
        since = until - timedelta(days=int(MAX_BARS * _DAYS_PER_BAR["month"]))
    where = OverviewFilter(
        since,
        until,
        normalize_source(source) if source else None,
        bucket,
        coarsened_from=asked if bucket != asked else None,
    )
    return where, form


def calls_filter(params: QueryParams, taxonomy: Taxonomy) -> tuple[ExtractionFilter, Form]:
    """The Calls page's filter; the same ExtractionFilter as GET /v1/extractions'."""
    form = Form()
    since_day, until_day = form.day(params, "from"), form.day(params, "to")
    # The dates typed win over the exact times of a link from the overview (which the form
    # carries along hidden): a person who changes the dates means them.
    typed = since_day is not None or until_day is not None
    since_time, until_time = _time(form, params, "since"), _time(form, params, "until")
    if typed:
        form.values.pop("since", None)
        form.values.pop("until", None)
        since_time = until_time = None
    since = since_time or (_midnight(since_day) if since_day else None)
    until = until_time or (_midnight(until_day + timedelta(days=1)) if until_day else None)
    if since is not None and until is not None and since >= until:
        form.errors["from"] = "must be before the end"
        since = until = None
    language = form.text(params, "language", 20)
    if language is not None and not _LANGUAGE.match(language):
        form.errors["language"] = f"{language!r} is not a language tag (fr, en, fr-CA)"
        language = None
    source = form.text(params, "source", 100)
    batch = form.text(params, "batch_id", 36)
    batch_id = None
    if batch is not None:
        try:
            batch_id = uuid.UUID(batch)
        except ValueError:
            form.errors["batch_id"] = f"{batch!r} is not a batch id"
    filters = ExtractionFilter(
        reason=form.choice(params, "reason", taxonomy.codes),
        product=form.text(params, "product"),
        since=since,
        until=until,
        source=normalize_source(source) if source else None,
        status=form.choice(params, "status", STATUSES),
        min_confidence=form.fraction(params, "min_confidence"),
        max_confidence=form.fraction(params, "max_confidence"),
        review=form.choice(params, "review", REVIEW_STATES),
        answered=form.choice(params, "answered", ("yes",)) == "yes" or None,
        batch_id=batch_id,
        language=language,
    )
    return filters, form


def _time(form: Form, params: QueryParams, name: str) -> datetime | None:
    """An exact time (the overview's links to a bucket's calls), ISO 8601, UTC if no offset."""
    value = form.text(params, name, 40)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        form.errors[name] = f"{value!r} is not a time (ISO 8601)"
        return None
    if not FIRST_DAY <= moment.date() <= LAST_DAY:
        form.errors[name] = f"{value} is not between {FIRST_DAY} and {LAST_DAY}"
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
