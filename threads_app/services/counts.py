"""Upkeep of the thread counters (`models.ThreadCount`, the table `threads_app_threadcount`),
which database triggers keep.

On PostgreSQL each connection adds to a shard of its own, so the shards of a (key, state)
multiply as connections come and go (CONN_MAX_AGE renews them). `fold_thread_counts` adds
them into shard 0 and removes them; the worker's sweep calls it. Counts read the same before
and after: a fold moves numbers, it never changes a sum.
"""

from django.db import connection, transaction

# Shards in use by a transaction right now are locked by it: skipped, never waited for, so a
# fold never holds up a writer (nor deadlocks with one). The grouped rows are added in
# (key, state) order, so two folds at once wait for each other in the same order.
_POSTGRES_FOLD = """
WITH moved AS (
    DELETE FROM threads_app_threadcount WHERE id IN (
        SELECT id FROM threads_app_threadcount WHERE shard <> 0 FOR UPDATE SKIP LOCKED
    )
    RETURNING api_key_id, state, threads
)
INSERT INTO threads_app_threadcount (api_key_id, state, shard, threads)
SELECT api_key_id, state, 0, SUM(threads) FROM moved
GROUP BY api_key_id, state ORDER BY api_key_id, state
ON CONFLICT (api_key_id, state, shard)
DO UPDATE SET threads = threads_app_threadcount.threads + excluded.threads
"""


def fold_thread_counts() -> int:
    """Fold every shard not in use into shard 0; returns how many (key, state) were folded
    (0 on SQLite, where there are no other shards)."""
    if connection.vendor != "postgresql":
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_POSTGRES_FOLD)
        folded: int = cursor.rowcount
    return max(folded, 0)
