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

# The chart's drawing box (the SVG's viewBox): it fills the card's width, and its labels stay
# readable when it shrinks to a phone's (larger there, see app.css). The margins hold the
# axes' numbers and titles.
WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 10, 40
SERIES = ("created", "imported", "deleted")  # a bar each a day, in this order; CSS classes
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
    series: str  # one of SERIES: its CSS class
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
    top: int
    baseline: float
    bars: list[Bar]
    ticks: list[Tick]
    labels: list[DayLabel]

    @property
    def label_y(self) -> float:
        """Where the days' dates sit, under the x axis."""
        return round(self.baseline + 14, 2)

    @property
    def middle_x(self) -> float:
        return round((self.left + self.right) / 2, 2)

    @property
    def middle_y(self) -> float:
        return round((self.top + self.baseline) / 2, 2)


def _scale_top(highest: int) -> int:
    """The y axis' top: the highest count rounded up to 1, 2 or 5 times a power of ten."""
    if highest <= 1:
        return 1
    power = int(10 ** math.floor(math.log10(highest)))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= highest)


def activity_chart(days: list[DayActivity]) -> Chart:
    """Three bars a day (SERIES: created, imported, deleted) on one scale, oldest day on the
    left."""
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_height
    highest = max((getattr(day, series) for day in days for series in SERIES), default=0)
    top = _scale_top(highest)
    slot = plot_width / max(len(days), 1)
    bar_width = slot * 0.8 / len(SERIES)
    bars, labels = [], []
    for n, day in enumerate(days):
        x = LEFT + n * slot + slot * 0.1
        for offset, series in enumerate(SERIES):
            count = getattr(day, series)
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
            labels.append(DayLabel(round(x + bar_width * len(SERIES) / 2, 2), f"{day.day:%b %-d}"))
    ticks = [Tick(value, round(baseline - plot_height * value / top, 2)) for value in (0, top)]
    if top > 1 and top % 2 == 0:
        ticks.insert(1, Tick(top // 2, round(baseline - plot_height / 2, 2)))
    return Chart(WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, TOP, baseline, bars, ticks, labels)


@require_GET
def overview(request: AuthenticatedHttpRequest) -> HttpResponse:
    summary = selectors.overview(request.user)
    setup = selectors.setup(request.user, summary)
    waiting = selectors.waiting_for(request.user)
    context = {
        "nav": "overview",
        "overview": summary,
        "setup": setup,
        "may_add_threads": setup.can_create,  # the context processor's, without its query
        "state_headings": STATE_HEADINGS.items(),
        "chart": activity_chart(summary.days),
        "days": selectors.OVERVIEW_DAYS,
        "pending_invitations": waiting.invitations,
        "approvals_waiting": waiting.approvals,
    }
    return render_page(request, "overview", context)
