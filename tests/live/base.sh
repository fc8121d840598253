#!/bin/bash
# tests/live/base.sh: the cached Debian 12 rootfs the live test boots (sourced by run.sh).
#
# Built once with debootstrap into $CACHE/base (gitignored), with the .debs of every
# layout downloaded into its apt cache, so each layout installs offline and a second
# run never touches a mirror. Delete $CACHE to rebuild.

# The packages of each layout, installed from the cache inside a fresh copy.
BASE_INCLUDE=systemd,systemd-sysv,dbus,dnsutils,iproute2,procps,ca-certificates,libnss-myhostname,dnsmasq-base,less
LAYOUT_PKGS_resolved="systemd-resolved libnss-resolve"
LAYOUT_PKGS_nm="network-manager"
# Bump when the list above changes: a stale base is rebuilt.
BASE_VERSION=1

build_base() {
  local base=$CACHE/base
  if [ -f "$CACHE/base.ok" ] && [ "$(cat "$CACHE/base.ok")" = "$BASE_VERSION" ]; then
    note "rootfs: cached in $base"; return 0
  fi
  local mirror
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
  mirror=${mirror:-http://deb.debian.org/debian}
  note "rootfs: debootstrap bookworm from $mirror into $base (once; a few minutes)"
  rm -rf "$base" "$CACHE/base.ok"; mkdir -p "$CACHE"
  debootstrap --variant=minbase --include="$BASE_INCLUDE" bookworm "$base" "$mirror" >>"$LOG" 2>&1 \
    || { echo "debootstrap failed (see $LOG)"; return 1; }
  printf 'deb %s bookworm main\n' "$mirror" > "$base/etc/apt/sources.list"
  # Download (never install) each layout's packages: layouts install offline from here.
  chroot "$base" apt-get update >>"$LOG" 2>&1 &&
  # shellcheck disable=SC2086
  chroot "$base" env DEBIAN_FRONTEND=noninteractive apt-get install -y --download-only \
      $LAYOUT_PKGS_resolved $LAYOUT_PKGS_nm >>"$LOG" 2>&1 \
    || { echo "downloading layout packages failed (see $LOG)"; return 1; }
  # The person's machine before ncd: a hand-written resolv.conf with a search domain,
  # a hosts file, a hostname. The layouts start from this.
  rm -f "$base/etc/resolv.conf"
  printf '# written by hand (no resolver manager)\nnameserver 192.0.2.53\nsearch lan\n' > "$base/etc/resolv.conf"
  printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n127.0.1.1 ncdtest\n' > "$base/etc/hosts"
  echo ncdtest > "$base/etc/hostname"
  # No login prompt on the console, no root password needed: we enter with nsenter.
  chroot "$base" systemctl mask console-getty.service getty@tty1.service systemd-networkd-wait-online.service >>"$LOG" 2>&1 || true
  echo "$BASE_VERSION" > "$CACHE/base.ok"
  note "rootfs: built ($(du -sh "$base" | cut -f1))"
}
