"""Make the audit table append-only in the database too: UPDATE and DELETE are rejected.

`install_triggers`/`remove_triggers` take a connection, for code outside migrations (the test
suite lifts the triggers while pytest-django flushes the database after a transactional test).
"""

from django.db import migrations

TABLE = "threads_app_auditevent"

SQLITE_INSTALL = [
    f"CREATE TRIGGER audit_no_update BEFORE UPDATE ON {TABLE} "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;",
    f"CREATE TRIGGER audit_no_delete BEFORE DELETE ON {TABLE} "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;",
]
SQLITE_REMOVE = ["DROP TRIGGER IF EXISTS audit_no_update;", "DROP TRIGGER IF EXISTS audit_no_delete;"]

POSTGRES_INSTALL = [
    "CREATE OR REPLACE FUNCTION threads_app_audit_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'audit events are append-only'; END; $$ LANGUAGE plpgsql;",
    f"CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
    "FOR EACH ROW EXECUTE FUNCTION threads_app_audit_append_only();",
    f"CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON {TABLE} "
    "FOR EACH STATEMENT EXECUTE FUNCTION threads_app_audit_append_only();",
]
POSTGRES_REMOVE = [
    f"DROP TRIGGER IF EXISTS audit_append_only ON {TABLE};",
    f"DROP TRIGGER IF EXISTS audit_no_truncate ON {TABLE};",
    "DROP FUNCTION IF EXISTS threads_app_audit_append_only();",
]

STATEMENTS = {
    "sqlite": (SQLITE_INSTALL, SQLITE_REMOVE),
    "postgresql": (POSTGRES_INSTALL, POSTGRES_REMOVE),
}


def _run(connection, execute, index, statements=STATEMENTS):
    """Run the install (index 0) or remove (1) statements for the connection's database.

    `statements` is this module's by default; 0003 passes the chain head's.
    """
    install_remove = statements.get(connection.vendor)
    if install_remove is None:
        raise NotImplementedError(f"No audit trigger for {connection.vendor}.")
    for statement in install_remove[index]:
        execute(statement)


def install_triggers(connection, statements=STATEMENTS):
    with connection.cursor() as cursor:
        _run(connection, cursor.execute, 0, statements)


def remove_triggers(connection, statements=STATEMENTS):
    with connection.cursor() as cursor:
        _run(connection, cursor.execute, 1, statements)


def install(apps, schema_editor):
    _run(schema_editor.connection, schema_editor.execute, 0)


def remove(apps, schema_editor):
    _run(schema_editor.connection, schema_editor.execute, 1)


class Migration(migrations.Migration):
    dependencies = [("threads_app", "0001_initial")]

    operations = [migrations.RunPython(install, remove)]
