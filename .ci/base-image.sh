#!/usr/bin/env bash
# CI only: make docker.io/library/debian:bookworm-slim without a registry, from Debian's mirror
# (debootstrap's minbase, trimmed as the official slim image is), so that `FROM
# debian:bookworm-slim` builds unchanged. Does nothing when the image is already there.
set -euo pipefail

image=docker.io/library/debian:bookworm-slim
if podman image exists "$image"; then
  echo "base image: $image is already here"
  exit 0
fi

rootfs=$(mktemp -d /var/tmp/threads-console-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "base image: debootstrap --variant=minbase bookworm (about a minute)"
debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$rootfs.log" 2>&1 || {
  tail -n 30 "$rootfs.log" >&2
  echo "base image: debootstrap failed (log above)" >&2
  rm -f "$rootfs.log"
  exit 1
}
rm -f "$rootfs.log"

# What the official slim image does: no docs, man pages or locales, no apt caches, and the
# updates and security suites beside the release.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CONF
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<'CONF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CONF
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
rm -rf "$rootfs"/usr/share/{man,info,groff,lintian,locale}/* \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/var/log/* "$rootfs"/tmp/*

tar -C "$rootfs" -c . | podman import --quiet \
  --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  - "$image" >/dev/null
echo "base image: $image imported ($(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=si)B)"
