"""Geometry for the server-rendered SVG charts of the usage page and the home dashboard.

The Content-Security-Policy allows no inline style, so every chart is drawn from numbers
computed here and classes in app.css; the templates in _charts.html turn them into SVG.
All inputs are rows of `hexahub.gateway.usage.summary`.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

CHART_WIDTH, CHART_HEIGHT, CHART_TOP = 720, 180, 14
# Stacked charts colour their series with classes series-0 .. series-{SERIES-1}; the rest
# of the groups are summed into one "other" series.
SERIES = 5
OTHER = "other"


def row_tokens(row: dict[str, Any]) -> int:
    return int(row["prompt_tokens"] + row["completion_tokens"])


def row_value(row: dict[str, Any], key: str) -> float:
    return float(row_tokens(row)) if key == "tokens" else float(row["cost_usd"])


def day_slots(first: date, period: int) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range(period)]


def daily_totals(rows: list[dict[str, Any]], first: date, period: int) -> list[dict[str, Any]]:
    """Tokens and cost per day (every day of the period, empty days included)."""
    per_day: dict[str, dict[str, Any]] = {
        day: {"day": day, "tokens": 0, "cost": 0.0} for day in day_slots(first, period)
    }
    for row in rows:
        slot = per_day.get(row["bucket"])
        if slot is not None:
            slot["tokens"] += row_tokens(row)
            slot["cost"] += row["cost_usd"]
    return list(per_day.values())


def bar_chart(days: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Geometry of a bar chart (SVG user units) for the days that have a value."""
    peak = max((day[key] for day in days), default=0) or 0
    slot = CHART_WIDTH / max(len(days), 1)
    width = max(slot * 0.7, 1.0)
    bars = []
    for index, day in enumerate(days):
        value = day[key]
        if not value:
            continue
        height = max((CHART_HEIGHT - CHART_TOP) * value / peak, 1.0)
        bars.append(
            {
                "x": round(index * slot + (slot - width) / 2, 2),
                "y": round(CHART_HEIGHT - height, 2),
                "width": round(width, 2),
                "height": round(height, 2),
                "day": day["day"],
                "value": value,
            }
        )
    return {"bars": bars, "peak": peak, "width": CHART_WIDTH, "height": CHART_HEIGHT}


def stacked_chart(
    rows: list[dict[str, Any]],
    first: date,
    period: int,
    key: str,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Per-day bars split by group (model or member): the biggest groups get a colour each.

    `rows` are summary rows bucketed by day; `key` is "tokens" or "cost"; `labels` names
    the groups (e-mail addresses for user ids).
    """
    labels = labels or {}
    totals: dict[str, float] = {}
    for row in rows:
        group = str(row["group"] or "")
        totals[group] = totals.get(group, 0.0) + row_value(row, key)
    ranked = [g for g, v in sorted(totals.items(), key=lambda item: (-item[1], item[0])) if v]
    shown = ranked[:SERIES] if len(ranked) <= SERIES else ranked[: SERIES - 1]
    series_of = {group: index for index, group in enumerate(shown)}
    other_index = len(shown) if len(ranked) > len(shown) else None

    days = day_slots(first, period)
    stacks: dict[str, dict[int, float]] = {day: {} for day in days}
    for row in rows:
        stack = stacks.get(row["bucket"])
        if stack is None:
            continue
        index = series_of.get(str(row["group"] or ""), other_index)
        if index is None:
            continue
        stack[index] = stack.get(index, 0.0) + row_value(row, key)

    peak = max((sum(stack.values()) for stack in stacks.values()), default=0.0)
    slot = CHART_WIDTH / max(len(days), 1)
    width = max(slot * 0.7, 1.0)
    legend = [
        {"index": index, "label": labels.get(group, group) or "(none)", "total": totals[group]}
        for group, index in series_of.items()
    ]
    if other_index is not None:
        rest = sum(v for g, v in totals.items() if g not in series_of)
        legend.append({"index": other_index, "label": OTHER, "total": rest})
    names = {entry["index"]: entry["label"] for entry in legend}
    bars = []
    for position, day in enumerate(days):
        base = float(CHART_HEIGHT)
        for index in sorted(stacks[day]):
            value = stacks[day][index]
            if not value or not peak:
                continue
            height = max((CHART_HEIGHT - CHART_TOP) * value / peak, 1.0)
            base -= height
            bars.append(
                {
                    "x": round(position * slot + (slot - width) / 2, 2),
                    "y": round(base, 2),
                    "width": round(width, 2),
                    "height": round(height, 2),
                    "series": index,
                    "label": names[index],
                    "day": day,
                    "value": value,
                }
            )
    return {
        "bars": bars,
        "legend": legend,
        "peak": peak,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
    }
