#!/bin/sh
# The stand-in's entrypoint (CI only): on a first start (an empty PGDATA), initdb with
# POSTGRES_USER as the superuser and POSTGRES_PASSWORD as its password, password logins over
# TCP, and POSTGRES_DB created; then run the command (postgres, with any -c options).
set -eu
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
case "${1:-}" in -*) set -- postgres "$@" ;; esac

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "Database is uninitialized and POSTGRES_PASSWORD is not set." >&2
    exit 1
  fi
  password_file=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
  initdb --username="$POSTGRES_USER" --pwfile="$password_file" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
  rm -f "$password_file"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  # A first start on its Unix socket only (PGHOST and PGPORT may name the real server's TCP
  # address, on the host network in CI: the setup never goes there).
  socket=/var/run/postgresql
  pg_ctl --silent --wait --options="-c listen_addresses='' -c port=5432 -k $socket" start
  if [ "$POSTGRES_DB" != postgres ]; then
    env -u PGHOST -u PGPORT psql --quiet --host="$socket" --port=5432 --username="$POSTGRES_USER" \
      --dbname=postgres -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  pg_ctl --silent --wait --mode=fast stop
  echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"
