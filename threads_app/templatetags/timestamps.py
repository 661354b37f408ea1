"""`{% timestamp moment %}`: a moment in time as every page shows it."""

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

TO_THE_MINUTE = "%Y-%m-%d %H:%M"
TO_THE_SECOND = "%Y-%m-%d %H:%M:%S"


@register.simple_tag
def timestamp(
    moment: datetime | None, *, seconds: bool = False, absolute: bool = False
) -> SafeString:
    """A `<time>` with the ISO instant (app.js shows it relative to now) and its text in the
    current time zone, UTC, to the minute (or the second); nothing for no moment, as the
    `date` filter. `absolute` (an audit trail) keeps the UTC text and shows the relative time
    on hover instead. One tag rather than two filters: it is the same markup everywhere, and
    a page of messages or of threads shows one per row."""
    if moment is None:
        return SafeString("")
    local = timezone.localtime(moment)
    text = local.strftime(TO_THE_SECOND if seconds else TO_THE_MINUTE)
    how = "data-relative-title" if absolute else "data-relative"
    return format_html('<time datetime="{}" {}>{} UTC</time>', local.isoformat(), how, text)
