#!/usr/bin/env bash
# Build berth-base:bookworm without a registry: debootstrap a minbase Debian
# root file system, trim it, and `docker import` it.
#
#   bash images/base/build.sh TAG RECIPE_HASH
#
# Run by scripts/images.sh (as root). Uses a temporary directory under
# /var/tmp and removes it (after unmounting anything left mounted in it).
set -euo pipefail

tag="$1"
recipe="$2"
suite="${BERTH_DEBIAN_SUITE:-bookworm}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[images] base: %s\n' "$*" >&2; }

# Debian mirror: $BERTH_DEBIAN_MIRROR, else the one this host's apt uses for
# Debian main, else debootstrap's own default.
mirror="${BERTH_DEBIAN_MIRROR:-}"
host_sources=/etc/apt/sources.list.d/debian.sources
if [ -z "$mirror" ] && [ -r "$host_sources" ]; then
  mirror="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$host_sources")"
fi
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list ]; then
  mirror="$(awk -v s="$suite" '$1 == "deb" && $3 == s { print $2; exit }' /etc/apt/sources.list)"
fi

tmp="$(mktemp -d /var/tmp/berth-base.XXXXXX)"
rootfs="$tmp/rootfs"
cleanup() {
  # debootstrap (or our chroot step) may leave proc/sys mounted when interrupted:
  # unmount everything below $tmp before deleting it.
  local m
  for m in $(awk -v t="$tmp/" 'index($2, t) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

log "debootstrap --variant=minbase $suite ${mirror:-(default mirror)}"
debootstrap --variant=minbase "$suite" "$rootfs" ${mirror:+"$mirror"} >"$tmp/debootstrap.log" 2>&1 || {
  tail -n 30 "$tmp/debootstrap.log" >&2
  [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
  exit 1
}

# Image-wide settings: small apt layers, no docs/locales, no service starts.
install -m 0644 "$here/apt-clean.conf" "$rootfs/etc/apt/apt.conf.d/docker-clean"
install -m 0644 "$here/dpkg-excludes" "$rootfs/etc/dpkg/dpkg.cfg.d/docker-excludes"
install -m 0755 "$here/policy-rc.d" "$rootfs/usr/sbin/policy-rc.d"

# Package sources: reuse the host's deb822 file when it is for the same suite
# (it adds -updates and -security); otherwise keep debootstrap's sources.list.
if [ -r "$host_sources" ] && grep -qE "^Suites:.*\b$suite\b" "$host_sources" \
  && ! grep -E '^Suites:' "$host_sources" | grep -vqE "\b$suite(-updates|-security)?\b"; then
  install -m 0644 "$host_sources" "$rootfs/etc/apt/sources.list.d/debian.sources"
  rm -f "$rootfs/etc/apt/sources.list"
fi

# Pick up -updates/-security for what debootstrap installed.
log "apt-get upgrade in the root file system"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c 'apt-get update -qq && apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade && apt-get clean' \
  >"$tmp/upgrade.log" 2>&1 || { tail -n 30 "$tmp/upgrade.log" >&2; exit 1; }
umount "$rootfs/proc"

# Trim: docs (copyright files stay), manuals, translations, apt lists, caches, logs.
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf "$rootfs"/usr/share/{man,info,groff,lintian,linda}/* \
  "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
  "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/* "$rootfs/debootstrap"
# Docker provides these at run time.
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/machine-id"
find "$rootfs/dev" -mindepth 1 -delete

log "docker import $tag"
tar -C "$rootfs" --numeric-owner --xattrs -c . | docker import \
  --change 'CMD ["/bin/bash"]' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'LABEL berth.managed="true"' \
  --change 'LABEL berth.image="berth-base"' \
  --change "LABEL berth.recipe=\"$recipe\"" \
  - "$tag" >/dev/null
