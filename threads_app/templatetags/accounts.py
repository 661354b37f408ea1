"""`user|two_factor_required_by`: why the user must keep two-factor authentication on (the
two-factor page then offers no way to turn it off), or None."""

from django import template
from django.contrib.auth.models import AnonymousUser, User

from threads_app import selectors

register = template.Library()


@register.filter
def two_factor_required_by(user: User | AnonymousUser) -> str | None:
    if not user.is_authenticated:
        return None
    return selectors.two_factor_required_by(user)
