"""The overview's stacked bar chart, laid out from the rollups' counts (drawn as SVG by the
template: no chart library, nothing to fetch)."""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# Distinct for the common colour-vision deficiencies (Okabe & Ito, with two greys added).
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
    "#999999",
    "#6a3d9a",
)
WIDTH = 960
HEIGHT = 260
LEFT = 48  # room for the axis' numbers
BOTTOM = 24  # room for the buckets' dates


@dataclass(frozen=True)
class Segment:
    reason: str
    count: int
    y: float
    height: float
    colour: str


@dataclass(frozen=True)
class Bar:
    start: datetime
    end: datetime  # exclusive: the next bucket's start
    # The part of the bucket inside the filter's range: the calls its count is of (a week or
    # a month cut by the range's ends counts only the days inside).
    since: datetime
    until: datetime
    x: float
    width: float
    total: int
    counts: dict[str, int]  # per reason
    segments: list[Segment]
    show_date: bool  # a date under this bar (not under every one of 90 days)


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    reasons: list[str]  # in stacking order (the taxonomy's, then any other)
    colours: dict[str, str]
    maximum: int
    ticks: list[tuple[float, int]]  # (y, value)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = BOTTOM


def bucket_end(start: datetime, bucket: str) -> datetime:
    if bucket == "day":
        return start + timedelta(days=1)
    if bucket == "week":
        return start + timedelta(days=7)
    return start + timedelta(days=monthrange(start.year, start.month)[1])


def bucket_start(moment: datetime, bucket: str) -> datetime:
    """The start of the bucket `moment` is in (weeks from Monday), in UTC."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day


def stacked_chart(
    items: list[dict[str, object]],
    bucket: str,
    codes: tuple[str, ...],
    since: datetime,
    until: datetime,
) -> Chart:
    """Bars from `items` ({bucket: ISO time, reason, count}, as /v1/analytics/reasons gives
    them) for every bucket of [since, until), empty ones included (time reads evenly),
    stacked in the taxonomy's order."""
    per_bucket: dict[datetime, dict[str, int]] = {}
    for item in items:
        start = datetime.fromisoformat(str(item["bucket"]).replace("Z", "+00:00"))
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
        counts = per_bucket.setdefault(start, {})
        counts[str(item["reason"])] = counts.get(str(item["reason"]), 0) + int(item["count"])  # type: ignore[call-overload]
    seen = {reason for counts in per_bucket.values() for reason in counts}
    reasons = [c for c in codes if c in seen] + sorted(seen - set(codes))
    colours = {
        r: PALETTE[i % len(PALETTE)] for i, r in enumerate(list(codes) + sorted(seen - set(codes)))
    }
    maximum = max((sum(c.values()) for c in per_bucket.values()), default=0)
    top = _nice_ceiling(maximum)
    plot_height = HEIGHT - BOTTOM - 8
    starts = []
    start = bucket_start(since, bucket)
    while start < until:
        starts.append(start)
        start = bucket_end(start, bucket)
    starts = sorted(set(starts) | set(per_bucket))
    slot = (WIDTH - LEFT) / max(len(starts), 1)
    every = max(1, round(len(starts) / 12))  # at most about 12 dates on the axis
    bars = []
    for index, start in enumerate(starts):
        counts = per_bucket.get(start, {})
        y = float(HEIGHT - BOTTOM)
        segments = []
        for reason in reasons:
            count = counts.get(reason, 0)
            if not count:
                continue
            height = plot_height * count / top if top else 0.0
            y -= height
            segments.append(Segment(reason, count, round(y, 2), round(height, 2), colours[reason]))
        bars.append(
            Bar(
                start=start,
                end=bucket_end(start, bucket),
                since=max(start, since),
                until=min(bucket_end(start, bucket), until),
                x=round(LEFT + index * slot + slot * 0.1, 2),
                width=round(max(slot * 0.8, 1.0), 2),
                total=sum(counts.values()),
                counts=counts,
                segments=segments,
                show_date=index % every == 0,
            )
        )
    ticks = [
        (round(HEIGHT - BOTTOM - plot_height * v / top, 2), v) for v in (0, top // 2, top) if top
    ]
    return Chart(bars, reasons, colours, maximum, ticks)


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 × 10^k at or above `value` (an axis that reads well)."""
    if value <= 0:
        return 0
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10
