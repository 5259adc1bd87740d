"""The status page at `/`: the worker's latest state as one HTML page, rendered here (readable
without JavaScript; it has none), refreshing itself. Everything a message wrote (job ids,
service names, error messages) is hostile text: the template escapes every value it prints."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from common.sizes import describe_size
from monitoring.state import MinuteTally, WorkerState
from protocol.result import FAILURES

REFRESH_S = 5
CHART_HEIGHT = 60
NOTICES = {
    "drain": "Drain asked: no new jobs start; running jobs finish.",
    "resume": "Resume asked: the worker takes new jobs again.",
    "cancel": "Cancel requested: the job stops within the cancel poll.",
}
_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class PageFacts:
    """The worker's settings that matter to someone looking at it, as (name, value) rows."""

    rows: tuple[tuple[str, str], ...]
    cancel_available: bool  # a cancel request can be stored (embedded queue or job table)


@dataclass(frozen=True)
class PageView:
    """What one rendering may show and do."""

    actions: bool  # this viewer may act: actions are on and its address is allowed
    token: str  # the form token actions must carry
    notice: str | None = None  # a key of NOTICES, from the last action's redirect


def render(state: WorkerState | None, facts: PageFacts, view: PageView, now: float | None = None) -> str:
    now = time.time() if now is None else now
    template = _ENVIRONMENT.get_template("status.html")
    return template.render(
        state=state,
        problems=[] if state is None else state.problems(now),
        facts=facts,
        view=view,
        notice=NOTICES.get(view.notice or ""),
        refresh_s=REFRESH_S,
        charts=[] if state is None else _charts(state.per_minute),
        failures=0 if state is None else sum(_failed(job.status) for job in state.recent),
        now=now,
        duration=duration,
        clock=clock,
        percent=percent,
        size=describe_size,
        failed=_failed,
    )


def _charts(tallies: list[MinuteTally]) -> list[dict[str, Any]]:
    """Two bar charts over the last hour: jobs finished and jobs failed, per minute."""
    charts = []
    for title, key, css in (("Jobs per minute", "finished", "bar"), ("Failures per minute", "failed", "bar fail")):
        values = [getattr(tally, key) for tally in tallies]
        peak = max(values, default=0)
        bars = [
            {
                "x": index * 10,
                "height": 0 if peak == 0 else max(1, round(value * CHART_HEIGHT / peak)),
                "value": value,
                "minute": clock(tally.minute),
            }
            for index, (tally, value) in enumerate(zip(tallies, values, strict=True))
        ]
        charts.append({"title": title, "css": css, "bars": bars, "peak": peak, "total": sum(values)})
    return charts


def _failed(status: str) -> bool:
    return status in FAILURES


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch))


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}%"
