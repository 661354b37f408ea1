#!/bin/sh
# The image's one entrypoint (README, "Run it with Docker Compose"):
#   web          (the default) wait for the database, migrate, createcachetable, then gunicorn
#                on $BIND (default 0.0.0.0:8000) with $WORKERS workers (default 2);
#                GUNICORN_CMD_ARGS adds any other gunicorn setting
#   worker       wait until the web's migrations are applied, then manage.py db_worker
#   manage ARGS  any manage.py command, e.g. `manage createsuperuser`
# Each server is exec'd: it is PID 1 and gets SIGTERM itself (gunicorn finishes its requests,
# the worker its task).
set -eu
cd /app

# prometheus_client's multi-process mode: a directory for this container's processes alone,
# emptied at each start (README, "Configuration").
reset_metrics_dir() {
  if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    rm -rf "$PROMETHEUS_MULTIPROC_DIR"
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  fi
}

wait_seconds=${WAIT_FOR_DATABASE_SECONDS:-300}
command=${1:-web}
[ $# -gt 0 ] && shift
case "$command" in
  web)
    python manage.py wait_for_database --timeout "$wait_seconds"
    python manage.py migrate --noinput
    python manage.py createcachetable
    reset_metrics_dir
    exec gunicorn dashboard.wsgi --bind "${BIND:-0.0.0.0:8000}" --workers "${WORKERS:-2}" \
      --graceful-timeout 25 "$@"
    ;;
  worker)
    python manage.py wait_for_database --migrations --timeout "$wait_seconds"
    reset_metrics_dir
    exec python manage.py db_worker --no-reload "$@"
    ;;
  manage)
    exec python manage.py "$@"
    ;;
  *)
    echo "Unknown command: $command. Use web (the default), worker, or manage ARGS..." >&2
    exit 64
    ;;
esac
