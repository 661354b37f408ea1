"""The Django admin's forms for adding and editing a user, with the usernames' one rule
(`models.validate_username`, unique in any case): the admin creates and renames accounts too.

A name that does not change is left alone, so an account named before the rule (with an "@",
say) can still be edited; renaming it, or any account, needs a name the rule accepts.
"""

from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from threads_app import selectors
from threads_app.models import USERNAME_HELP, normalise_username, validate_username


class _UsernameRule:
    """`clean_username` for a ModelForm of User (the instance still holds the name it had)."""

    cleaned_data: dict[str, object]
    instance: User

    def clean_username(self) -> str:
        username = normalise_username(str(self.cleaned_data.get("username") or ""))
        account = self.instance if self.instance.pk is not None else None
        if account is None or username != account.username:
            validate_username(username)
        if selectors.username_taken(username, other_than=account):
            raise ValidationError(
                "An account has this username already, in this or another case "
                "(Mia and mia are one name).",
                code="unique",
            )
        return username


class UserAddForm(_UsernameRule, AdminUserCreationForm):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].help_text = USERNAME_HELP


class UserEditForm(_UsernameRule, UserChangeForm):  # type: ignore[type-arg]
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].help_text = USERNAME_HELP
