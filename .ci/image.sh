#!/usr/bin/env bash
# CI: build the image and check the compose stack as a user would run it (README, "Run it with
# Docker Compose"): /health/ over plain HTTP and the log-in page; a user made by `manage
# createsuperuser` logs in; a key is added against the emulator profile; a bulk delete runs in
# the worker container; verify_audit says OK; SIGTERM stops web and worker cleanly; after
# `compose down` and `up` the data is still there. .ci/run calls it after `make test`.
#
# On these machines there is no container registry and no address outside 127.0.0.0/8 may be
# reached: .ci/base-image.sh makes debian:bookworm-slim with debootstrap, .ci/postgres-image is
# a stand-in for the official postgres image, and .ci/compose.host.yaml puts every service on
# the host network at 127.0.0.1. Everything it starts is removed when it ends, also on failure.
# Runs as root. Prints how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."

project=threads-console-ci
env_file=.ci/image-ci.env
work=$(mktemp -d /tmp/threads-console-image.XXXXXX)
started=$SECONDS
step_started=$SECONDS
timings=()

step() {
  if [ -n "${step_name:-}" ]; then timings+=("$(printf '%4ds  %s' $((SECONDS - step_started)) "$step_name")"); fi
  step_name=$1
  step_started=$SECONDS
  if [ -n "$step_name" ]; then echo "image.sh: $step_name" >&2; fi
}

fail() {
  echo "image.sh: FAILED: $*" >&2
  exit 1
}

checks_passed=0
passed() {
  checks_passed=$((checks_passed + 1))
  echo "image.sh: ok: $*" >&2
}

podman_compose="" # set once it is installed
compose() {
  [ -n "$podman_compose" ] || return 1
  "$podman_compose" --parallel 1 --in-pod false --project-name "$project" \
    -f compose.yaml -f .ci/compose.host.yaml --profile emulator "$@"
}
container() { echo "${project}_$1_1"; }

cleanup() {
  status=$?
  trap - EXIT INT TERM
  if [ $status -ne 0 ] && command -v podman >/dev/null; then
    for service in web worker postgres emulator; do
      if podman container exists "$(container $service)"; then
        echo "image.sh: --- last lines of $service's log ---" >&2
        podman logs --tail 40 "$(container $service)" 2>&1 | sed "s/^/  $service| /" >&2 || true
      fi
    done
  fi
  compose down --volumes --timeout 5 >/dev/null 2>&1 || true
  if command -v podman >/dev/null; then
    # Whatever compose missed (a one-off `run` container, an interrupted start).
    podman ps --all --quiet --filter "label=io.podman.compose.project=$project" |
      xargs --no-run-if-empty podman rm --force --volumes >/dev/null 2>&1 || true
    podman volume ls --quiet --filter "label=io.podman.compose.project=$project" |
      xargs --no-run-if-empty podman volume rm --force >/dev/null 2>&1 || true
    left=$(podman ps --all --quiet --filter "label=io.podman.compose.project=$project")
    [ -z "$left" ] || { echo "image.sh: containers left behind: $left" >&2; status=1; }
  fi
  rm -rf "$work" "$env_file"
  print_timings
  # Worded unlike a test runner's closing line, so that CI's count of tests stays pytest's.
  if [ "$status" -eq 0 ]; then
    echo "image.sh: all $checks_passed checks of the stack held"
  else
    echo "image.sh: FAILED after $checks_passed checks held" >&2
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

print_timings() {
  step ""
  echo "image.sh: timings (seconds)" >&2
  printf '  %s\n' "${timings[@]}" >&2
  echo "image.sh: total $((SECONDS - started)) s" >&2
}

# --- tools, base images -------------------------------------------------------------------
step "podman, runc, debootstrap; containers.conf"
bash .ci/podman-setup.sh packages
export CI_CA_BUNDLE=${CI_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$CI_CA_BUNDLE" ] || fail "no CA bundle at $CI_CA_BUNDLE (set CI_CA_BUNDLE)"

# podman-compose's pip install waits on the network as debootstrap does: both at once.
step "base image debian:bookworm-slim (and podman-compose from PyPI beside it)"
bash .ci/podman-setup.sh compose >"$work/podman-compose" 2>"$work/podman-compose.log" &
installing=$!
bash .ci/base-image.sh >&2
wait "$installing" || { cat "$work/podman-compose.log" >&2; fail "podman-compose did not install"; }
podman_compose=$(cat "$work/podman-compose")

step "postgres stand-in"
postgres_image=docker.io/library/postgres:15
stand_in_label='{{index .Labels "threads-console.ci-stand-in"}}'
if podman image exists "$postgres_image" &&
  [ "$(podman image inspect --format "$stand_in_label" "$postgres_image")" != postgres ]; then
  echo "image.sh: $postgres_image is the real one; using it" >&2
else
  podman build --quiet --network host --tag "$postgres_image" .ci/postgres-image >/dev/null
fi

# --- the stack's ports, settings and commands ---------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CI_POSTGRES_PORT=$(free_port)
CI_WEB_PORT=$(free_port)
CI_EMULATOR_PORT=$(free_port)
EMULATOR_KEY=ci-emulator-key-$RANDOM$RANDOM
export CI_POSTGRES_PORT CI_WEB_PORT CI_EMULATOR_PORT EMULATOR_KEY
web=http://127.0.0.1:$CI_WEB_PORT
emulator=http://127.0.0.1:$CI_EMULATOR_PORT

# Leftovers of an earlier run that was killed before its cleanup.
compose down --volumes --timeout 5 >/dev/null 2>&1 || true

# --- the image ----------------------------------------------------------------------------
step "build the image (podman-compose build, --parallel 1)"
compose --podman-build-args=--network=host build web >"$work/build.log" 2>&1 ||
  { tail -n 40 "$work/build.log" >&2; fail "the image did not build (log above)"; }
image=localhost/threads-console:latest
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image.sh: $image is $((size / 1000000)) MB" >&2
[ "$size" -le 300000000 ] || fail "the image is $((size / 1000000)) MB, above 300 MB"
user=$(podman image inspect --format '{{.Config.User}}' "$image")
[ -n "$user" ] && [ "$user" != root ] && [ "$user" != 0 ] || fail "the image runs as '${user:-root}'"
podman run --rm --network none --entrypoint sh "$image" -c \
  'test "$(id -u)" != 0 && ! test -e /app/.git && ! test -e /app/.env && ! test -e /app/.venv &&
   ! ls /app/*.sqlite3 >/dev/null 2>&1 && ! test -e /run/secrets/ca && test -s /app/staticfiles/staticfiles.json' ||
  fail "the image runs as root, holds .git, .env, .venv, a database or the CA secret, or lacks its static files"
passed "the image: $((size / 1000000)) MB (at most 300), runs as $user, no .git, .env, .venv, database or CA secret, static files collected"

step "settings for the stack (manage generate_secrets in the image)"
umask 077
podman run --rm --network none -e DJANGO_DEBUG=1 "$image" manage generate_secrets >"$env_file"
grep -q '^DJANGO_SECRET_KEY=.\{50,\}$' "$env_file" || fail "generate_secrets printed no secret key"
passed "manage generate_secrets in the image prints the secrets"
POSTGRES_PASSWORD=$(sed -n 's/^POSTGRES_PASSWORD=//p' "$env_file")
export POSTGRES_PASSWORD
# Production settings (HTTPS on): the checks below speak plain HTTP to gunicorn with
# X-Forwarded-Proto: https, as the TLS proxy in front would.
cat >>"$env_file" <<EOF
DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost
DJANGO_HTTPS=1
EOF
umask 022

# --- up, and the checks ---------------------------------------------------------------------
wait_healthy() { # wait until /health/ says ok and a worker beats, or fail after $1 seconds
  local deadline=$((SECONDS + $1)) body=""
  while [ $SECONDS -lt $deadline ]; do
    body=$(curl --silent --max-time 5 "$web/health/" || true)
    case "$body" in
      *'"status": "ok"'*'"worker_heartbeat_age_seconds": null'*) ;;
      *'"status": "ok"'*) return 0 ;;
    esac
    for service in postgres web worker emulator; do
      restarts=$(podman inspect --format '{{.RestartCount}}' "$(container $service)" 2>/dev/null || echo 0)
      [ "$restarts" -le 2 ] || fail "$service keeps stopping (restarted $restarts times)"
    done
    sleep 2
  done
  fail "the stack was not healthy with a live worker within $1 s; /health/ said: ${body:-nothing}"
}

step "compose up (postgres, web, worker, emulator)"
compose up --detach >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "compose up failed"; }
wait_healthy 240
passed "the stack is up: /health/ says ok, and a worker beats (it waited for the migrations)"

step "checks: health, log-in page, healthchecks"
code=$(curl --silent --output /dev/null --write-out '%{http_code}' --max-time 10 "$web/health/")
[ "$code" = 200 ] || fail "/health/ over plain HTTP answered $code (it must not redirect to HTTPS)"
code=$(curl --silent --output /dev/null --write-out '%{http_code}' --max-time 10 "$web/accounts/login/")
[ "$code" = 301 ] || fail "the log-in page over plain HTTP answered $code, not the redirect to HTTPS"
code=$(curl --silent --output /dev/null --write-out '%{http_code}' --max-time 10 \
  -H 'X-Forwarded-Proto: https' "$web/accounts/login/")
[ "$code" = 200 ] || fail "the log-in page (through the TLS proxy) answered $code"
for service in web postgres; do
  podman healthcheck run "$(container $service)" >/dev/null ||
    fail "compose's healthcheck of $service fails"
done
passed "/health/ answers plain HTTP (no HTTPS redirect); the log-in page answers 200 through the proxy; compose's healthchecks pass"

step "checks: createsuperuser, log in, add a key, bulk delete in the worker"
password="ci-$RANDOM-$RANDOM-password"
compose run --rm --no-deps -e DJANGO_SUPERUSER_PASSWORD="$password" web \
  manage createsuperuser --noinput --username ci-admin --email ci-admin@example.com \
  >"$work/createsuperuser.log" 2>&1 || { cat "$work/createsuperuser.log" >&2; fail "createsuperuser failed"; }
passed "compose run --rm web manage createsuperuser"
checks=(.venv/bin/python .ci/image_checks.py --web "$web" --emulator "$emulator"
  --key "$EMULATOR_KEY" --username ci-admin --password "$password" --state "$work/state.json")
"${checks[@]}" work || fail "the checks through the web app failed (above)"
podman logs "$(container worker)" >"$work/worker.log" 2>&1
grep -q 'path=threads_app.tasks.bulk_delete_task state=SUCCESSFUL' "$work/worker.log" ||
  fail "the worker container's log does not show the bulk delete task succeeding"
passed "a user logged in, added the emulator's key, and the worker container ran a bulk delete"

step "checks: verify_audit"
podman exec "$(container web)" python manage.py verify_audit | tee "$work/audit.txt" >&2
grep -q '^OK: ' "$work/audit.txt" || fail "verify_audit did not print OK"
passed "verify_audit prints OK"

step "compose stop: SIGTERM stops web and worker cleanly"
compose stop >"$work/stop.log" 2>&1 || { cat "$work/stop.log" >&2; fail "compose stop failed"; }
for service in web worker; do
  code=$(podman inspect --format '{{.State.ExitCode}}' "$(container $service)")
  [ "$code" = 0 ] || fail "$service exited with status $code on SIGTERM (not a clean stop)"
done
passed "SIGTERM stopped web and worker cleanly (exit status 0)"

step "compose down and up again: the data is still there"
compose down --timeout 5 >"$work/down.log" 2>&1 || { cat "$work/down.log" >&2; fail "compose down failed"; }
compose up --detach >"$work/up2.log" 2>&1 || { cat "$work/up2.log" >&2; fail "compose up (again) failed"; }
wait_healthy 240
"${checks[@]}" still-there || fail "the data did not survive compose down and up (above)"
podman exec "$(container web)" python manage.py verify_audit | tee "$work/audit2.txt" >&2
grep -q '^OK: ' "$work/audit2.txt" || fail "verify_audit did not print OK after the restart"
passed "after compose down and up: the user, key, thread and job are there, and the audit chain verifies"
