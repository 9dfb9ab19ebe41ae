"""The evaluation report: JSON for machines, Markdown with a confusion-matrix image for people."""

from __future__ import annotations

import json
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Any

from app.evaluation.metrics import CALIBRATION_RULE, COVERAGES, PRODUCT_RULE, wilson_interval
from app.evaluation.paired import SIGNIFICANCE, PairedComparison, compare_all
from app.evaluation.runner import BackendResult, Prediction

PAIRED_RULE = (
    "reason answers compared record by record; p is the exact two-sided McNemar test on the "
    "records only one configuration got right: the chance of a split this uneven between two "
    "equally good configurations"
)


def to_json(results: list[BackendResult], meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "meta": {**meta, "product_rule": PRODUCT_RULE, "paired_rule": PAIRED_RULE},
        "results": [asdict(r) for r in results],
        "comparisons": [{**asdict(c), "significant": c.significant} for c in compare_all(results)],
    }


def write_json(path: Path, results: list[BackendResult], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(results, meta), indent=2, ensure_ascii=False), "utf-8")


def load_results(path: Path) -> tuple[list[BackendResult], dict[str, Any]]:
    """Results written by `write_json` (`callx eval --json`), and their meta.

    Raises ValueError, naming the file, on anything else. Files written before the interval
    was reported get it computed from their predictions.
    """
    try:
        data = json.loads(path.read_text("utf-8"))
        results = []
        for raw in data["results"]:
            predictions = [Prediction(**p) for p in raw.pop("predictions")]
            right = sum(p.reason_right for p in predictions)
            interval = raw.pop("reason_accuracy_ci95", None) or wilson_interval(right, raw["n"])
            results.append(
                BackendResult(**raw, reason_accuracy_ci95=tuple(interval), predictions=predictions)
            )
        return results, data["meta"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a `callx eval --json` results file ({exc})") from None


def summary_rows(results: list[BackendResult]) -> list[list[str]]:
    rows = [
        [
            "configuration",
            "model",
            "n",
            "reason acc.",
            "95% CI",
            "macro-F1",
            "product",
            "invalid",
            "failed",
            "p50 ms",
            "p95 ms",
            "tokens in/out",
            "cost",
        ]
    ]
    for r in results:
        rows.append(
            [
                r.label,
                r.model + _how_chosen(r),
                str(r.n),
                f"{r.reason_accuracy:.1%}",
                f"{r.reason_accuracy_ci95[0]:.1%}-{r.reason_accuracy_ci95[1]:.1%}",
                f"{r.reason_macro_f1:.3f}",
                f"{r.product_match_rate:.1%}",
                f"{r.invalid_rate:.1%}",
                str(r.failed),
                f"{r.latency_p50_ms:.0f}",
                f"{r.latency_p95_ms:.0f}",
                f"{r.prompt_tokens}/{r.completion_tokens}",
                f"{r.cost:.4f}",
            ]
        )
    return rows


def confidence_rows(results: list[BackendResult]) -> list[list[str]]:
    """How far the confidence can be trusted, and products named in no part of the call; only
    the configurations with a confidence or a product (the header alone when none has)."""
    coverages = [f"{c:.0%}" for c in COVERAGES]
    rows = [
        [
            "configuration",
            "calibrated",
            "calibration error",
            *(f"acc. of top {c}" for c in coverages),
            "product calibration error",
            "product not in call",
        ]
    ]
    for r in results:
        if r.calibration_error is None and not r.products_answered:
            continue
        at = r.accuracy_at_coverage
        rows.append(
            [
                r.label,
                f"{r.calibrated}/{r.n}",
                "-" if r.calibration_error is None else f"{r.calibration_error:.3f}",
                *("-" if at.get(c) is None else f"{at[c]:.1%}" for c in coverages),
                "-"
                if r.product_calibration_error is None
                else f"{r.product_calibration_error:.3f} (raw)",
                f"{r.products_not_in_call}/{r.products_answered}",
            ]
        )
    return rows


def comparison_rows(comparisons: list[PairedComparison]) -> list[list[str]]:
    rows = [
        [
            "reference",
            "other",
            "n",
            "both right",
            "only reference",
            "only other",
            "both wrong",
            "p (McNemar)",
            "verdict",
        ]
    ]
    for c in comparisons:
        better = c.reference if c.only_reference_right > c.only_other_right else c.other
        rows.append(
            [
                c.reference,
                c.other,
                str(c.n),
                str(c.both_right),
                str(c.only_reference_right),
                str(c.only_other_right),
                str(c.both_wrong),
                f"{c.p_value:.3g}",
                f"{better} better (p < {SIGNIFICANCE})" if c.significant else "not separable",
            ]
        )
    return rows


def wrong_rows(result: BackendResult) -> list[list[str]]:
    """The calls whose reason this configuration got wrong: id, expected, answered, confidence."""
    rows = [["id", "expected", "answered", "confidence"]]
    for p in result.predictions:
        if p.reason_right:
            continue
        answered = p.reason if p.status == "succeeded" else f"failed ({p.error_kind})"
        confidence = f"{p.confidence:.2f}" if p.confidence is not None else "-"
        rows.append([p.id, p.expected_reason, str(answered), confidence])
    return rows


def _table(rows: list[list[str]]) -> str:
    def cells(row: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"

    lines = [cells(rows[0]), "|" + "---|" * len(rows[0])]
    lines += [cells(row) for row in rows[1:]]
    return "\n".join(lines)


def confusion_svg(result: BackendResult, labels: list[str]) -> str:
    """A heat-map of the confusion matrix (rows: expected, columns: predicted)."""
    cell, left, top = 44, 150, 150
    size = len(labels)
    width, height = left + cell * size + 20, top + cell * size + 20
    peak = max((max(row) for row in result.confusion), default=1) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="14" font-size="13">{escape(result.label)}: rows expected, '
        "columns predicted</text>",
    ]
    for i, label in enumerate(labels):
        y = top + i * cell + cell / 2 + 4
        x = left + i * cell + cell / 2
        parts.append(f'<text x="{left - 6}" y="{y}" text-anchor="end">{escape(label)}</text>')
        turn = f"rotate(-60 {x} {top - 6})"
        parts.append(f'<text x="{x}" y="{top - 6}" transform="{turn}">{escape(label)}</text>')
    for i, row in enumerate(result.confusion):
        for j, count in enumerate(row):
            shade = int(255 - 200 * count / peak)
            colour = f"rgb({shade},{shade},255)" if i != j else f"rgb({shade},255,{shade})"
            x, y = left + j * cell, top + i * cell
            box = f'x="{x}" y="{y}" width="{cell}" height="{cell}"'
            parts.append(f'<rect {box} fill="{colour}" stroke="#999"/>')
            middle = f'x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle"'
            parts.append(f"<text {middle}>{count}</text>")
    parts.append("</svg>")
    return "\n".join(parts)


THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99)
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _by_confidence(result: BackendResult) -> list[tuple[float, bool]]:
    """(confidence, reason right) of each call, most confident first; a call without a
    confidence (failed, or a backend that gives none) counts as 0."""
    calls = [(p.confidence or 0.0, p.reason_right) for p in result.predictions]
    return sorted(calls, key=lambda call: -call[0])


def threshold_rows(results: list[BackendResult]) -> list[list[str]]:
    """Per configuration with confidences and threshold: the share of calls at or above it
    (auto-accepted by CALLX_REVIEW__THRESHOLD) and their reason accuracy."""
    rows = [["configuration", *(f"≥ {t:g}" for t in THRESHOLDS)]]
    for r in results:
        if r.calibration_error is None:
            continue
        calls = _by_confidence(r)
        cells = []
        for threshold in THRESHOLDS:
            kept = [right for confidence, right in calls if confidence >= threshold]
            share = len(kept) / len(calls)
            cells.append(f"{share:.0%}: {sum(kept) / len(kept):.1%}" if kept else "0%: -")
        rows.append([r.label, *cells])
    return rows


def coverage_svg(results: list[BackendResult]) -> str | None:
    """The coverage-accuracy curve of each configuration with confidences: the reason accuracy
    of its most confident calls against their share of all calls (None: none has)."""
    curves = [r for r in results if r.calibration_error is not None]
    if not curves:
        return None
    left, top, plot_w, plot_h = 60, 30, 420, 260
    floor = 0.5  # accuracy axis from 50% to 100%

    def x(coverage: float) -> float:
        return left + coverage * plot_w

    def y(accuracy: float) -> float:
        return top + (1 - (max(accuracy, floor) - floor) / (1 - floor)) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + plot_w + 200}" '
        f'height="{top + plot_h + 50}" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="16" font-size="13">Reason accuracy of the most confident calls, '
        "by the share of calls kept</text>",
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#999"/>',
    ]
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(
            f'<text x="{x(tick)}" y="{top + plot_h + 16}" text-anchor="middle">{tick:.0%}</text>'
        )
    for tick in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick)}" y2="{y(tick)}" stroke="#eee"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4}" text-anchor="end">{tick:.0%}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 36}" text-anchor="middle">'
        "calls kept (most confident first)</text>"
    )
    for number, result in enumerate(curves):
        calls = _by_confidence(result)
        colour = _COLOURS[number % len(_COLOURS)]
        points, right = [], 0
        for k, (_, ok) in enumerate(calls, start=1):
            right += ok
            points.append(f"{x(k / len(calls)):.1f},{y(right / k):.1f}")
        parts.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        legend_y = top + 14 + 16 * number
        parts.append(
            f'<rect x="{left + plot_w + 12}" y="{legend_y - 9}" width="10" height="10" '
            f'fill="{colour}"/>'
        )
        parts.append(f'<text x="{left + plot_w + 28}" y="{legend_y}">{escape(result.label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def write_report(
    directory: Path, results: list[BackendResult], labels: list[str], meta: dict[str, Any]
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "results.json", results, meta)
    sections = [
        f"# callx evaluation: {meta.get('dataset')}",
        "",
        f"Records: {meta.get('records')}, taxonomy {meta.get('taxonomy_version')}, "
        f"prompt {meta.get('prompt_version')}, run {meta.get('date')}.",
        "",
        _table(summary_rows(results)),
        "",
        f"95% CI: Wilson interval of the reason accuracy. Product match rule: {PRODUCT_RULE}.",
        "",
    ]
    confidence = confidence_rows(results)
    if len(confidence) > 1:
        sections += [
            "## Confidence and products",
            "",
            _table(confidence),
            "",
            f"Rule: {CALIBRATION_RULE}. A product is not in the call when one of its words "
            "(3 letters or more) is in no part of the transcript.",
            "",
        ]
    curve = coverage_svg(results)
    if curve is not None:
        (directory / "coverage.svg").write_text(curve, "utf-8")
        sections += [
            "## Choosing the review threshold",
            "",
            "![coverage-accuracy curve](coverage.svg)",
            "",
            "Per confidence threshold (`CALLX_REVIEW__THRESHOLD`): the share of calls at or "
            "above it, which callx accepts without a person, and their reason accuracy.",
            "",
            _table(threshold_rows(results)),
            "",
        ]
    comparisons = compare_all(results)
    if comparisons:
        sections += [
            "## Paired comparison (reason)",
            "",
            _table(comparison_rows(comparisons)),
            "",
            f"Rule: {PAIRED_RULE}.",
            "",
        ]
    for number, result in enumerate(results):
        image = f"confusion-{number}.svg"
        (directory / image).write_text(confusion_svg(result, labels), "utf-8")
        per_class = [["reason", "precision", "recall", "F1", "support"]] + [
            [
                label,
                f"{s['precision']:.2f}",
                f"{s['recall']:.2f}",
                f"{s['f1']:.2f}",
                str(s["support"]),
            ]
            for label, s in result.per_class.items()
        ]
        wrong = wrong_rows(result)
        sections += [
            f"## {result.label}",
            "",
            _table(per_class),
            "",
            f"![confusion matrix]({image})",
            "",
            f"### Calls with the wrong reason: {len(wrong) - 1} of {result.n}",
            "",
            _table(wrong) if len(wrong) > 1 else "None.",
            "",
        ]
    path = directory / "report.md"
    path.write_text("\n".join(sections), "utf-8")
    return path


def _how_chosen(r: BackendResult) -> str:
    """How a local model chose the reasons on this list, where not by the codes alone."""
    note = " (prior taken out)" if r.prior_corrected else ""
    if r.definitions_read:
        note += f" (definitions read by {r.reader})" if r.reader else " (definitions read)"
    return note
