"""Guard the audit chain head in the database: it is never deleted and only moves forward.

Without this, someone who truncates the audit table could copy an earlier event's sequence
and hash into the head and `verify_audit` would find nothing missing. With it, an UPDATE must
raise the head's sequence (and keep its id), and DELETE (and TRUNCATE on PostgreSQL) is
rejected. The signed checkpoints outside the database (`audit_checkpoint`) cover an attacker
who drops these triggers too.

`install_triggers`/`remove_triggers` take a connection, as in 0002 (the test suite lifts both
sets of triggers while pytest-django flushes the database after a transactional test).
"""

import importlib

from django.db import migrations

# The runner of 0002, given this migration's statements.
_append_only = importlib.import_module("threads_app.migrations.0002_audit_append_only_triggers")

TABLE = "threads_app_auditchainhead"
MOVED_BACK = "the audit chain head only moves forward"
DELETED = "the audit chain head cannot be deleted"

SQLITE_INSTALL = [
    f"CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON {TABLE} "
    "WHEN NEW.sequence <= OLD.sequence OR NEW.id IS NOT OLD.id "
    f"BEGIN SELECT RAISE(ABORT, '{MOVED_BACK}'); END;",
    f"CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{DELETED}'); END;",
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_head_forward_only;",
    "DROP TRIGGER IF EXISTS audit_head_no_delete;",
]

POSTGRES_INSTALL = [
    "CREATE OR REPLACE FUNCTION threads_app_audit_head_forward_only() RETURNS trigger AS $$ "
    "BEGIN "
    f"IF TG_OP IN ('DELETE', 'TRUNCATE') THEN RAISE EXCEPTION '{DELETED}'; END IF; "
    "IF NEW.sequence <= OLD.sequence OR NEW.id IS DISTINCT FROM OLD.id THEN "
    f"RAISE EXCEPTION '{MOVED_BACK}'; END IF; "
    "RETURN NEW; "
    "END; $$ LANGUAGE plpgsql;",
    f"CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON {TABLE} "
    "FOR EACH ROW EXECUTE FUNCTION threads_app_audit_head_forward_only();",
    f"CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON {TABLE} "
    "FOR EACH STATEMENT EXECUTE FUNCTION threads_app_audit_head_forward_only();",
]
POSTGRES_REMOVE = [
    f"DROP TRIGGER IF EXISTS audit_head_forward_only ON {TABLE};",
    f"DROP TRIGGER IF EXISTS audit_head_no_truncate ON {TABLE};",
    "DROP FUNCTION IF EXISTS threads_app_audit_head_forward_only();",
]

STATEMENTS = {
    "sqlite": (SQLITE_INSTALL, SQLITE_REMOVE),
    "postgresql": (POSTGRES_INSTALL, POSTGRES_REMOVE),
}


def install_triggers(connection):
    _append_only.install_triggers(connection, STATEMENTS)


def remove_triggers(connection):
    _append_only.remove_triggers(connection, STATEMENTS)


def install(apps, schema_editor):
    _append_only._run(schema_editor.connection, schema_editor.execute, 0, STATEMENTS)


def remove(apps, schema_editor):
    _append_only._run(schema_editor.connection, schema_editor.execute, 1, STATEMENTS)


class Migration(migrations.Migration):
    dependencies = [("threads_app", "0003_thread_deleting_state")]

    operations = [migrations.RunPython(install, remove)]
