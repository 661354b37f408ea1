"""Template tags of the thread pages."""

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from threads_app.models import TrackedThread

register = template.Library()


@register.simple_tag
def thread_state(thread: TrackedThread) -> SafeString:
    """The thread's state badge, as every page shows it (a tag, not an include: the list
    shows one per row, and a tag costs a fraction of an included template)."""
    deleted = thread.state == TrackedThread.State.DELETED
    css = "deleted-state" if deleted else thread.state
    return format_html('<span class="badge {}">{}</span>', css, thread.get_state_display().lower())
