#!/usr/bin/env bash
# Build the local base image of the service images for hosts that cannot
# pull the official Python image: Debian bookworm's minimal system with
# Python 3 and venv, made with debootstrap and loaded with `docker import`.
#   make-base-image.sh [--force]    (as root; skipped if the image exists)
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../lib/common.sh"
# shellcheck source=../lib/images.sh
source "$MF_ADMIN/lib/images.sh"

force=
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) usage "[--force]" ;;
    *) usage "[--force]" "unknown option: $arg" ;;
  esac
done
need_cmd docker debootstrap
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root: sudo $0"
if [ -z "$force" ] && docker image inspect "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
  log "$LOCAL_BASE_IMAGE exists (--force rebuilds it)"
  exit 0
fi

rootfs="$(mktemp -d /var/tmp/microflack-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
log "bootstrapping Debian ${DEBIAN_SUITE} into $rootfs (about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$DEBIAN_SUITE" "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
  > "$rootfs.log" 2>&1 || {
    tail -n 20 "$rootfs.log" >&2
    die "debootstrap failed (log above)"
  }
rm -f "$rootfs.log"
# What a container never needs: package caches, lists, documentation.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
  "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" --numeric-owner -cf - . |
  docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    - "$LOCAL_BASE_IMAGE" >/dev/null
log "built $LOCAL_BASE_IMAGE ($(image_size "$LOCAL_BASE_IMAGE"))"
