"""The overview's chart counts imported threads too (issue 22, item 8): `DailyThreadActivity`
gains `imported`, which the audit log's trigger adds `thread.imported` events to (0010 counted
creations and deletions only), and which starts from the imports already in the log.

`install_trigger`/`remove_trigger` take a connection, as 0010's do.
"""

import importlib

from django.db import migrations, models

AUDIT = "threads_app_auditevent"
ACTIVITY = "threads_app_dailythreadactivity"
# The events the chart counts: a creation, an import, and a deletion whose thread went.
SERIES = {
    "created": "action = 'thread.created'",
    "imported": "action = 'thread.imported'",
    "deleted": "action = 'thread.deleted' AND outcome IN ('success', 'already_gone')",
}
SQLITE_DAY = "date(created_at)"  # stored as UTC text
POSTGRES_DAY = "(created_at AT TIME ZONE 'UTC')::date"
SCOPE = "COALESCE(team_id, 0), COALESCE(owner_id, 0)"


def _add_activity(rows: str, day: str, where: str = "", series=SERIES) -> str:
    """Add the counted events of `rows` (NEW, or a transition table) to their day's row, in
    the columns of `series` (a new row has 0 in the others; a row there keeps them)."""
    columns = ", ".join(SERIES)
    sums = ", ".join(
        f"SUM(CASE WHEN {series[name]} THEN 1 ELSE 0 END)" if name in series else "0"
        for name in SERIES
    )
    counted = " OR ".join(f"({test})" for test in series.values())
    adds = ", ".join(f"{name} = {ACTIVITY}.{name} + excluded.{name}" for name in series)
    return (
        f"INSERT INTO {ACTIVITY} (day, team_id, owner_id, {columns}) "
        f"SELECT {day}, {SCOPE}, {sums} FROM {rows} WHERE ({counted}) {where}"
        f"GROUP BY {day}, {SCOPE} ORDER BY 1, 2, 3 "
        f"ON CONFLICT (day, team_id, owner_id) DO UPDATE SET {adds};"
    )


STATEMENTS = {
    "sqlite": (
        [
            "DROP TRIGGER IF EXISTS thread_activity;",
            f"CREATE TRIGGER thread_activity AFTER INSERT ON {AUDIT} BEGIN "
            f"{_add_activity(AUDIT, SQLITE_DAY, 'AND id = NEW.id ')} END;",
        ],
        _add_activity(AUDIT, SQLITE_DAY, series={"imported": SERIES["imported"]}),
    ),
    "postgresql": (
        [
            # The trigger stays; the function it runs counts the imports too.
            "CREATE OR REPLACE FUNCTION threads_app_count_activity() RETURNS trigger AS $$ "
            f"BEGIN {_add_activity('new_rows', POSTGRES_DAY)} RETURN NULL; END; $$ "
            "LANGUAGE plpgsql;",
        ],
        _add_activity(AUDIT, POSTGRES_DAY, series={"imported": SERIES["imported"]}),
    ),
}


def _for(connection):
    statements = STATEMENTS.get(connection.vendor)
    if statements is None:
        raise NotImplementedError(f"No thread-activity trigger for {connection.vendor}.")
    return statements


def install_trigger(connection):
    with connection.cursor() as cursor:
        for statement in _for(connection)[0]:
            cursor.execute(statement)


def _previous():
    return importlib.import_module("threads_app.migrations.0010_overview")


def remove_trigger(connection):
    """Back to 0010's trigger, which counts creations and deletions only (on SQLite that one
    goes back once the column is gone: see `drop_sqlite_trigger`)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER IF EXISTS thread_activity;")
        else:
            cursor.execute(_previous().POSTGRES_INSTALL[-2])  # its function; the trigger stays


def drop_sqlite_trigger(apps, schema_editor):
    """SQLite remakes the table to add the column, which a trigger naming it forbids."""
    if schema_editor.connection.vendor == "sqlite":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS thread_activity;")


def restore_sqlite_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(_previous().SQLITE_INSTALL[-1])


def count_and_install(apps, schema_editor):
    """Count the imports already in the log, then keep counting them, in one transaction."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute(_for(connection)[1])
    install_trigger(connection)


def uninstall(apps, schema_editor):
    remove_trigger(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("threads_app", "0014_sso"),
    ]

    operations = [
        migrations.RunPython(drop_sqlite_trigger, restore_sqlite_trigger),
        migrations.AddField(
            model_name="dailythreadactivity",
            name="imported",
            field=models.IntegerField(default=0),
        ),
        migrations.RunPython(count_and_install, uninstall),
    ]
