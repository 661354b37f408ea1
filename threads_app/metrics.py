"""Prometheus metrics read from the database at scrape time: jobs by state and queue depth.

Requests and latency per view come from django-prometheus' middleware, upstream calls from
the counters in `threads_app.upstream`; both live in the process that counted them. What is
shared by every instance and worker (tasks, bulk-delete jobs, heartbeats) is read here, on
each scrape, so any instance reports the same numbers.
"""

from collections.abc import Iterator

from django.db import DatabaseError
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from threads_app import selectors


class DatabaseCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        try:
            families = list(self._families())
        except DatabaseError:
            yield GaugeMetricFamily("threads_database_up", "The database answered.", value=0)
            return
        yield GaugeMetricFamily("threads_database_up", "The database answered.", value=1)
        yield from families

    def _families(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily(
            "threads_tasks", "Background tasks in the database, by status.", labels=["status"]
        )
        for status, count in selectors.task_counts().items():
            tasks.add_metric([status], count)
        yield tasks
        yield GaugeMetricFamily(
            "threads_task_queue_depth", "Tasks ready to run now.", value=selectors.queue_depth()
        )
        jobs = GaugeMetricFamily(
            "threads_bulk_delete_jobs", "Bulk-delete jobs, by state.", labels=["state"]
        )
        for state, count in selectors.bulk_delete_job_counts().items():
            jobs.add_metric([state], count)
        yield jobs
        age = GaugeMetricFamily(
            "threads_worker_heartbeat_age_seconds",
            "Seconds since the newest worker heartbeat (no sample: no worker ever beat).",
        )
        seconds = selectors.newest_heartbeat_age()
        if seconds is not None:
            age.add_metric([], seconds)
        yield age


# Its own registry, so nothing reads the database except a scrape (the default registry asks
# a collector for its names when it is registered).
DATABASE_REGISTRY = CollectorRegistry(auto_describe=False)
DATABASE_REGISTRY.register(DatabaseCollector())
