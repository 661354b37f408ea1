"""The overview: the first page after logging in. Threads per key and state, the keys that
need attention, and threads created and deleted per day as an SVG chart drawn here.

The chart is plain SVG in the page: no script, no inline style (the CSP allows neither); its
colours come from classes in static/css/app.css, so it follows light and dark mode.
"""

import math
from dataclasses import dataclass

from django.http import HttpResponse
from django.views.decorators.http import require_GET

from threads_app import selectors
from threads_app.selectors import DayActivity
from threads_app.views.htmx import AuthenticatedHttpRequest, render_page

# The chart's drawing box (the SVG's viewBox): narrow enough that its labels stay readable
# when it shrinks to a phone's width, and it scales up with the page.
WIDTH, HEIGHT = 360, 160
LEFT, RIGHT, TOP, BOTTOM = 30, 16, 10, 22
LABEL_EVERY = 7  # days between two dates under the chart
# The table's column headings: short, so that the five columns fit a phone.
STATE_HEADINGS = {
    selectors.STATES.ACTIVE: "Active",
    selectors.STATES.GONE: "Gone",
    selectors.STATES.DELETING: "Deleting",
    selectors.STATES.DELETED: "Deleted",
}


@dataclass(frozen=True)
class Bar:
    series: str  # "created" or "deleted": its CSS class
    x: float
    y: float
    width: float
    height: float
    label: str  # its tooltip: the day and the count


@dataclass(frozen=True)
class Tick:
    value: int
    y: float


@dataclass(frozen=True)
class DayLabel:
    x: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: int  # the plot's right edge
    baseline: float
    bars: list[Bar]
    ticks: list[Tick]
    labels: list[DayLabel]


def _scale_top(highest: int) -> int:
    """The y axis' top: the highest count rounded up to 1, 2 or 5 times a power of ten."""
    if highest <= 1:
        return 1
    power = int(10 ** math.floor(math.log10(highest)))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= highest)


def activity_chart(days: list[DayActivity]) -> Chart:
    """Two bars a day (created, deleted) on one scale, oldest day on the left."""
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_height
    top = _scale_top(max((max(day.created, day.deleted) for day in days), default=0))
    slot = plot_width / max(len(days), 1)
    bar_width = slot * 0.4
    bars, labels = [], []
    for n, day in enumerate(days):
        x = LEFT + n * slot + slot * 0.1
        for offset, series, count in ((0, "created", day.created), (1, "deleted", day.deleted)):
            height = plot_height * count / top
            bars.append(
                Bar(
                    series,
                    round(x + offset * bar_width, 2),
                    round(baseline - height, 2),
                    round(bar_width, 2),
                    round(height, 2),
                    f"{day.day:%b %-d}: {count} {series}",
                )
            )
        if (len(days) - 1 - n) % LABEL_EVERY == 0:  # today, and every LABEL_EVERY days back
            labels.append(DayLabel(round(x + bar_width, 2), f"{day.day:%b %-d}"))
    ticks = [Tick(value, round(baseline - plot_height * value / top, 2)) for value in (0, top)]
    if top > 1 and top % 2 == 0:
        ticks.insert(1, Tick(top // 2, round(baseline - plot_height / 2, 2)))
    return Chart(WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, baseline, bars, ticks, labels)


@require_GET
def overview(request: AuthenticatedHttpRequest) -> HttpResponse:
    summary = selectors.overview(request.user)
    context = {
        "nav": "overview",
        "overview": summary,
        "state_headings": STATE_HEADINGS.items(),
        "chart": activity_chart(summary.days),
        "days": selectors.OVERVIEW_DAYS,
        "pending_invitations": selectors.my_pending_invitations(request.user).count(),
    }
    return render_page(request, "overview", context)
