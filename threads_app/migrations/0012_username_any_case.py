"""Usernames are unique regardless of case: a unique index on LOWER(username) of auth_user.

Log-in finds an account by its username in any case, so `admin` and `ADMIN` side by side lock
both out and mix their audit trails. The index is added to Django's own table (not a model of
this app, so not in the migration state): SQLite remakes a table to alter it, so a later
migration that alters auth_user on SQLite must add it again (`add_username_index`);
tests/test_usernames.py fails if it is missing.

Before the index, the migration looks for accounts that already clash and, if there are any,
refuses with their names: rename all but one of each group, then migrate again.
"""

from django.core.management.base import CommandError
from django.db import migrations
from django.db.models import Count, UniqueConstraint
from django.db.models.functions import Lower

INDEX = UniqueConstraint(Lower("username"), name="auth_user_username_any_case")


def refuse_clashes(apps, schema_editor):
    users = apps.get_model("auth", "User").objects.using(schema_editor.connection.alias)
    folded = users.annotate(folded=Lower("username"))
    clashing = (
        folded.values("folded").annotate(accounts=Count("pk")).filter(accounts__gt=1)
    ).values("folded")
    groups: dict[str, list[str]] = {}
    rows = folded.filter(folded__in=clashing).order_by("folded", "username")
    for name, username in rows.values_list("folded", "username"):
        groups.setdefault(name, []).append(username)
    if groups:
        clashes = "; ".join(" and ".join(f"“{u}”" for u in group) for group in groups.values())
        raise CommandError(
            "Usernames must differ by more than case (log-in cannot tell them apart), and "
            f"these accounts clash: {clashes}. Rename all but one account of each group (in "
            "the Django admin, or `manage.py shell`), then run `manage.py migrate` again."
        )


def add_username_index(apps, schema_editor):
    schema_editor.add_constraint(apps.get_model("auth", "User"), INDEX)


def drop_username_index(apps, schema_editor):
    schema_editor.remove_constraint(apps.get_model("auth", "User"), INDEX)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("threads_app", "0011_accounts"),
    ]

    operations = [
        migrations.RunPython(refuse_clashes, migrations.RunPython.noop),
        migrations.RunPython(add_username_index, drop_username_index),
    ]
