"""The thread list's indexes: substring search through a text index, and the sorts and filters.

Search (`TrackedThread.search_text`, lower-cased):
- PostgreSQL: a pg_trgm GIN index, which `LIKE '%…%'` uses. `CREATE EXTENSION IF NOT EXISTS
  pg_trgm` needs a role allowed to create it: pg_trgm is a trusted extension (PostgreSQL 13+),
  so the database's owner, or any role with CREATE on the database, may; otherwise a superuser
  runs `CREATE EXTENSION pg_trgm;` in the database once, before `migrate`.
- SQLite: an external-content FTS5 table with the trigram tokenizer (`SEARCH_TABLE`, its rowid
  the thread's id), kept in step by triggers on insert, delete and a change of the text.

`install_search_index(connection)` creates the SQLite table's triggers again: Django remakes a
SQLite table to alter it (a later migration of TrackedThread), which drops its triggers, so
such a migration must call it (tests/test_threads_search.py fails when the index falls behind).
"""

import django.db.models.deletion
import django.db.models.functions.comparison
import django.db.models.functions.text
from django.conf import settings
from django.db import migrations, models


TABLE = "threads_app_trackedthread"
SEARCH_TABLE = "threads_app_trackedthread_search"

SQLITE_TRIGGERS = [
    f"CREATE TRIGGER IF NOT EXISTS thread_search_insert AFTER INSERT ON {TABLE} BEGIN "
    f"INSERT INTO {SEARCH_TABLE}(rowid, search_text) VALUES (new.id, new.search_text); END;",
    f"CREATE TRIGGER IF NOT EXISTS thread_search_delete AFTER DELETE ON {TABLE} BEGIN "
    f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); END;",
    f"CREATE TRIGGER IF NOT EXISTS thread_search_update AFTER UPDATE OF search_text ON {TABLE} "
    "WHEN old.search_text IS NOT new.search_text BEGIN "
    f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); "
    f"INSERT INTO {SEARCH_TABLE}(rowid, search_text) VALUES (new.id, new.search_text); END;",
]
SQLITE_INSTALL = [
    # Both sides are lower-cased already (TrackedThread.build_search_text, and the query):
    # case-sensitive trigrams match exactly what `search_text LIKE '%…%'` does.
    f"CREATE VIRTUAL TABLE {SEARCH_TABLE} USING fts5(search_text, content='{TABLE}', "
    "content_rowid='id', tokenize='trigram case_sensitive 1');",
    f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}) VALUES ('rebuild');",
    *SQLITE_TRIGGERS,
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS thread_search_insert;",
    "DROP TRIGGER IF EXISTS thread_search_delete;",
    "DROP TRIGGER IF EXISTS thread_search_update;",
    f"DROP TABLE IF EXISTS {SEARCH_TABLE};",
]
POSTGRES_INSTALL = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm;",
    # New rows wait in the index's pending list until it is merged (by the insert that fills
    # it, or VACUUM), and every search reads that list: 256 kB, not the default 4 MB, keeps a
    # search that matches nothing under a millisecond right after a bulk load.
    f"CREATE INDEX thread_search_trgm ON {TABLE} USING gin (search_text gin_trgm_ops) "
    "WITH (gin_pending_list_limit = 256);",
]
# The extension stays: other tables may use it, and dropping it needs more rights.
POSTGRES_REMOVE = ["DROP INDEX IF EXISTS thread_search_trgm;"]
STATEMENTS = {
    "sqlite": (SQLITE_INSTALL, SQLITE_REMOVE),
    "postgresql": (POSTGRES_INSTALL, POSTGRES_REMOVE),
}


def _run(schema_editor, index):
    for statement in STATEMENTS[schema_editor.connection.vendor][index]:
        schema_editor.execute(statement)


def install(apps, schema_editor):
    _run(schema_editor, 0)


def remove(apps, schema_editor):
    _run(schema_editor, 1)


def install_search_index(connection):
    """The SQLite search table's triggers, again (after Django remade the table)."""
    with connection.cursor() as cursor:
        for statement in SQLITE_TRIGGERS:
            cursor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ("threads_app", "0008_bulk_job_task"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='trackedthread',
            name='thread_key_newest',
        ),
        migrations.RemoveIndex(
            model_name='trackedthread',
            name='thread_state_newest',
        ),
        migrations.AlterField(
            model_name='trackedthread',
            name='api_key',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='threads', to='threads_app.apikey'),
        ),
        migrations.AlterField(
            model_name='trackedthread',
            name='tracked_by',
            field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddIndex(
            model_name='trackedthread',
            index=models.Index(models.F('api_key'), django.db.models.functions.comparison.Coalesce('upstream_created_at', 'tracked_at'), models.F('id'), name='thread_key_created'),
        ),
        migrations.AddIndex(
            model_name='trackedthread',
            index=models.Index(models.F('api_key'), django.db.models.functions.text.Lower('label'), models.F('id'), name='thread_key_label'),
        ),
        migrations.AddIndex(
            model_name='trackedthread',
            index=models.Index(models.F('api_key'), models.F('state'), django.db.models.functions.comparison.Coalesce('upstream_created_at', 'tracked_at'), models.F('id'), name='thread_key_state'),
        ),
        migrations.AddIndex(
            model_name='trackedthread',
            index=models.Index(models.F('api_key'), models.F('tracked_by'), django.db.models.functions.comparison.Coalesce('upstream_created_at', 'tracked_at'), models.F('id'), name='thread_key_tracker'),
        ),
        migrations.AddIndex(
            model_name='trackedthread',
            index=models.Index(django.db.models.functions.comparison.Coalesce('upstream_created_at', 'tracked_at'), models.F('id'), name='thread_created'),
        ),
        migrations.AddIndex(
            model_name='trackedthread',
            index=models.Index(django.db.models.functions.text.Lower('label'), models.F('id'), name='thread_label'),
        ),
        migrations.AddIndex(
            model_name='trackedthread',
            index=models.Index(models.F('state'), django.db.models.functions.comparison.Coalesce('upstream_created_at', 'tracked_at'), models.F('id'), name='thread_state_created'),
        ),
        migrations.AddIndex(
            model_name='trackedthread',
            index=models.Index(models.F('tracked_by'), django.db.models.functions.comparison.Coalesce('upstream_created_at', 'tracked_at'), models.F('id'), name='thread_tracker_created'),
        ),
        # After the fields' changes: altering a field remakes the SQLite table (and its triggers).
        migrations.RunPython(install, remove),
    ]
