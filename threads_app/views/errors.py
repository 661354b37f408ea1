"""The app's error pages for requests that never reached a view: a body that cannot be read
(400) and a failed CSRF check (403).

Neither reads the request's form data: the error may be that it cannot be read (a form sent
in another charset than UTF-8, a broken multipart body), and Django's own handlers, which
check the CSRF token again, would read it again and fail with a 500.
"""

from django.http import HttpRequest, HttpResponse

from threads_app.views.htmx import render_page


def _error_page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    context = {"status": status, "title": title, "message": message}
    return render_page(request, "error", context, status=status)  # type: ignore[arg-type]


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler400. The body is marked as read (empty), as Django does for the parse errors it
    expects, so nothing after this answer trips over it again."""
    request._mark_post_parse_error()  # type: ignore[attr-defined]
    return _error_page(
        request,
        400,
        "The request could not be read",
        "What was sent could not be read as a form of this site (forms are sent as UTF-8). "
        "Nothing was changed. Go back, reload the page and try again.",
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW. `reason` is Django's, for developers: not shown."""
    return _error_page(
        request,
        403,
        "This form has expired",
        "The page was open too long, or was sent from another site, so nothing was changed. "
        "Reload the page and send the form again; cookies must be allowed for this site.",
    )
