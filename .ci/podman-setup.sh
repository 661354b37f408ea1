#!/usr/bin/env bash
# CI only: what podman needs on these machines (as root).
#   podman-setup.sh packages   Debian's podman, runc, debootstrap (and curl, python3-venv) when
#                              missing, and /etc/containers/containers.conf: ulimits within the
#                              machine's hard limits (the defaults are above them, and the
#                              sandbox refuses to start) and runc (Debian's crun refuses this
#                              machine's mixed cgroup setup)
#   podman-setup.sh compose    podman-compose from PyPI into a venv of its own; prints nothing on
#                              stdout but the podman-compose command to use
set -euo pipefail

PODMAN_COMPOSE_VERSION=1.6.0
venv=/opt/threads-console-ci/podman-compose

packages() {
  missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v curl >/dev/null || missing+=(curl)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "podman setup: installing ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  containers_conf
}

compose() {
  if [ "$("$venv/bin/podman-compose" --version 2>/dev/null | sed -n 's/^podman-compose version //p')" != "$PODMAN_COMPOSE_VERSION" ]; then
    echo "podman setup: podman-compose $PODMAN_COMPOSE_VERSION into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "podman-compose==$PODMAN_COMPOSE_VERSION" >&2
  fi
  echo "$venv/bin/podman-compose"
}

containers_conf() {
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
  conf=/etc/containers/containers.conf
  marker="# written by threads-console .ci/podman-setup.sh"
  wanted="$marker
  [containers]
  default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]

  [engine]
  runtime = \"runc\""
  if [ -e "$conf" ] && ! grep -qxF "$marker" "$conf"; then
    echo "podman setup: $conf is not ours; leaving it as it is (it needs: default_ulimits within" \
      "nofile=$nofile and nproc=$nproc, and runtime = \"runc\")" >&2
  elif [ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]; then
    mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$wanted" >"$conf"
    echo "podman setup: wrote $conf (nofile=$nofile, nproc=$nproc, runtime runc)" >&2
  fi
}

case "${1:-}" in
  packages | compose) "$1" ;;
  *) echo "usage: $0 packages|compose" >&2; exit 64 ;;
esac
