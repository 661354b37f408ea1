"""`{% timestamp %}`: the one way a page shows a moment."""

from datetime import UTC, datetime, timedelta, timezone

from django.template import Context, Template
from django.utils import timezone as django_timezone
from hypothesis import given
from hypothesis import strategies as st

FILTERS = Template(
    """<time datetime="{{ moment|date:'c' }}" data-relative>"""
    """{{ moment|date:"Y-m-d H:i" }} UTC</time>"""
)
TAG = Template("{% load timestamps %}{% timestamp moment %}")
SECONDS = Template("{% load timestamps %}{% timestamp moment seconds=True %}")


@given(
    st.datetimes(
        min_value=datetime(1000, 1, 1),
        max_value=datetime(9999, 12, 31),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    )
)
def test_the_tag_writes_what_the_two_date_filters_wrote(moment):
    context = Context({"moment": moment})

    assert TAG.render(context) == FILTERS.render(context)


def test_the_time_zone_is_the_current_one_and_seconds_are_on_request():
    moment = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=timezone(timedelta(hours=2)))

    shown = SECONDS.render(Context({"moment": moment}))

    assert shown == (
        '<time datetime="2026-03-04T03:06:07.890000+00:00" data-relative>'
        "2026-03-04 03:06:07 UTC</time>"
    )
    assert django_timezone.get_current_timezone_name() == "UTC"


def test_no_moment_shows_nothing():
    assert TAG.render(Context({"moment": None})) == ""
