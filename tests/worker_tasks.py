"""Tasks that exist for the worker tests only (a real worker imports them by path)."""

import time

from django_tasks import task


class Boom(Exception):
    pass


@task()
def explode(message):
    raise Boom(message)


@task()
def sleep_for(seconds):
    time.sleep(seconds)
    return seconds
