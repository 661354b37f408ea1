"""Account pages of our own beside allauth's: the demo's list of emails sent."""

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from threads_app import mail
from threads_app.views.htmx import HtmxHttpRequest, render_page


@login_not_required
@never_cache
@require_GET
def sent_email_list(request: HtmxHttpRequest) -> HttpResponse:
    """Debug mode only: the emails the outbox kept, newest first, so that someone trying the
    demo can follow a password-reset or invitation link without a mail server. Public, as the
    person resetting a password is not logged in; a 404 whenever DEBUG is off."""
    if not mail.outbox_enabled():
        raise Http404("No such page.")
    return render_page(request, "sent_email_list", {"emails": mail.sent_emails()})
