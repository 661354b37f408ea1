#!/usr/bin/env bash
# Start Debian's PostgreSQL (.ci/run installs it when missing), make sure the test role and
# database exist, and print the TEST_POSTGRES_URL that `make test` reads for its PostgreSQL pass.
# Runs as root; safe to run again while the server is up. Everything but the URL goes to stderr.
set -euo pipefail

name=threads_test # role, password and database: a throwaway server for tests only

# Debian's package creates the cluster on install; make one if this machine has none.
if [ -z "$(pg_lsclusters -h)" ]; then
  pg_createcluster "$(ls /usr/lib/postgresql | sort -V | tail -n 1)" main >&2
fi
read -r version cluster port status _ < <(pg_lsclusters -h | head -n 1)
case "$status" in
  online*) ;;
  *) pg_ctlcluster "$version" "$cluster" start >&2 ;;
esac

# The role needs CREATEDB: each test run creates (and drops) a database of its own.
(cd / && runuser -u postgres -- psql --port "$port" -v ON_ERROR_STOP=1 -qAt) >&2 <<SQL
SELECT 'CREATE ROLE $name' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$name')\gexec
ALTER ROLE $name LOGIN CREATEDB PASSWORD '$name';
SELECT 'CREATE DATABASE $name OWNER $name'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$name')\gexec
SQL

echo "postgres://$name:$name@127.0.0.1:$port/$name"
