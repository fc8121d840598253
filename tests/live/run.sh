#!/bin/bash
# tests/live/run.sh: ncd on a live systemd, the way a person installs it.
#
# Boots a minimal Debian 12 system (debootstrap, cached in tests/live/.cache) under
# systemd-nspawn with a private network, once per layout, and runs
#   install → query → the simulated networks → period → every guard bypass of issue 14
#   → reboot → uninstall → byte-exact restore
# for the plain resolv.conf, systemd-resolved and NetworkManager layouts, and the
# package path (dpkg -i, `ncd install` beside it, dpkg -r during a period, purge).
# Each check prints PASS or FAIL (NOT-RUN when its container did not come up), and
# the run ends with a table. A failed check never stops the run.
#
# Not in CI: it needs root with CAP_SYS_ADMIN, debootstrap and systemd-container
# (installed with apt-get when missing), a Debian mirror the first time, and time:
# about 11 minutes a layout (the period it starts must end before uninstall).
# One run at a time: two side by side (eight systemds) use up the host's inotify
# instances (fs.inotify.max_user_instances) and ncd-guard.path fails to start.
#
#   sudo tests/live/run.sh                         # every layout, this checkout
#   sudo MAIN=/path/to/ncd LAYOUTS="plain resolved" tests/live/run.sh
#   sudo PARALLEL=1 tests/live/run.sh              # layouts side by side (~11 min)
#
# Environment: MAIN (the tree to test; default: this script's), LAYOUTS (plain
# resolved nm deb), PROFILE (release | debug: which target/ binaries; built with
# cargo when missing or stale unless NO_BUILD=1), PERIOD (the test period, 10m),
# WORK (logs and the layouts' roots, /tmp/ncd-live), CACHE (the rootfs cache).
#
# Traffic: the containers have a private network: loopback, and veths into network
# namespaces made inside the container (10.77.1.0/24, 10.77.2.0/24). No default
# route, so nothing can leave. Only building the rootfs the first time reaches a
# Debian mirror. The host's resolver, port 53 and /etc are never touched.
#
# Caveat: a container reboot keeps the host kernel, so the boot id and the boot clock
# carry on (a real reboot's wall-clock crediting is not exercised).

set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAIN=$(cd "${MAIN:-$HERE/../..}" && pwd)
CACHE=${CACHE:-$HERE/.cache}
WORK=${WORK:-/tmp/ncd-live}
LAYOUTS=${LAYOUTS:-plain resolved nm deb}
PROFILE=${PROFILE:-release}
PERIOD=${PERIOD:-10m}
PARALLEL=${PARALLEL:-0}

[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (debootstrap, systemd-nspawn)" >&2; exit 2; }
mkdir -p "$WORK"
LOG=$WORK/run.log
: > "$LOG"
note() { printf '== %s %s\n' "$(date -u +%T)" "$*" | tee -a "$LOG"; }

# shellcheck source=tests/live/base.sh
source "$HERE/base.sh"

# ---------------------------------------------------------------- preparation

prepare_host() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
  command -v dpkg-deb >/dev/null || missing+=(dpkg)
  command -v python3 >/dev/null || missing+=(python3)
  if [ ${#missing[@]} -gt 0 ]; then
    note "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$LOG" 2>&1 || return 1
  fi
}

# The binaries under test: $MAIN/target/$PROFILE/{ncd,ncdd}, built when stale.
prepare_binaries() {
  BIN=$MAIN/target/$PROFILE
  if [ "${NO_BUILD:-0}" != 1 ]; then
    note "cargo build ($PROFILE) in $MAIN"
    local flag=(); [ "$PROFILE" = release ] && flag=(--release)
    (cd "$MAIN" && cargo build --locked "${flag[@]}" -p ncd -p ncd-daemon) >>"$LOG" 2>&1 ||
      { echo "cargo build failed (see $LOG)"; return 1; }
  fi
  [ -x "$BIN/ncd" ] && [ -x "$BIN/ncdd" ] || { echo "no $BIN/ncd or $BIN/ncdd"; return 1; }
  note "binaries: $BIN"
}

# The package, as `cargo deb -p ncd --no-build` makes it (or tests/live/mkdeb.py,
# from the same metadata, when cargo-deb is not installed).
prepare_deb() {
  DEB=$WORK/ncd.deb
  rm -f "$DEB"
  if command -v cargo-deb >/dev/null; then
    local src=$WORK/deb-src
    rm -rf "$src"; mkdir -p "$src/target/release"
    (cd "$MAIN" && git ls-files -z | tar --null -T - -cf -) | tar -C "$src" -xf -
    cp "$BIN/ncd" "$BIN/ncdd" "$src/target/release/"
    (cd "$src" && cargo deb -p ncd --no-build --fast -o "$DEB") >>"$LOG" 2>&1
  else
    python3 "$HERE/mkdeb.py" "$MAIN" "$BIN" "$DEB" >>"$LOG" 2>&1
  fi
  [ -f "$DEB" ] || { echo "building the package failed (see $LOG)"; return 1; }
  note "package: $DEB ($(du -h "$DEB" | cut -f1))"
}

# ---------------------------------------------------------------- one container

# Each layout runs in its own folder: rootfs copy, nspawn pid, log, results.
L= ; D= ; R= ; LLOG= ; RESULTS=

lnote() { printf '== %s [%s] %s\n' "$(date -u +%T)" "$L" "$*" | tee -a "$LLOG"; }

leader() { pgrep -P "$(cat "$D/nspawn.pid" 2>/dev/null)" 2>/dev/null | head -1; }

# ct CMD: run the bash string CMD inside the container (helpers sourced), output to
# stdout; its exit status.
ct() {
  local pid; pid=$(leader)
  [ -n "$pid" ] || { echo "  (container not running)"; return 125; }
  nsenter -t "$pid" -a env -i TERM=dumb HOME=/root LANG=C.UTF-8 \
    bash -c "source /opt/ncd-live/lib.sh; $1" 2>&1
}
# c CMD: ct, logged.
c() { printf '$ %s\n' "$1" >>"$LLOG"; ct "$1" >>"$LLOG"; }

boot() {
  setsid systemd-nspawn -b -D "$R" -M "ncdlive-$L" --private-network --register=no --keep-unit \
    --console=passive >>"$D/nspawn.log" 2>&1 </dev/null &
  echo $! > "$D/nspawn.pid"
  local i pid
  for i in $(seq 1 90); do
    pid=$(leader)
    if [ -n "$pid" ] && nsenter -t "$pid" -a systemctl is-system-running 2>/dev/null | grep -qE 'running|degraded'; then
      lnote "booted after ${i}s"; return 0
    fi
    sleep 1
  done
  lnote "boot timed out (see $D/nspawn.log)"; return 1
}

halt() {
  local nspawn; nspawn=$(cat "$D/nspawn.pid" 2>/dev/null) || return 0
  kill -0 "$nspawn" 2>/dev/null || return 0
  ct 'systemctl poweroff' >/dev/null
  local i
  for i in $(seq 1 40); do kill -0 "$nspawn" 2>/dev/null || { rm -f "$D/nspawn.pid"; return 0; }; sleep 1; done
  lnote "poweroff timed out: stopping the container's nspawn ($nspawn)"
  kill "$nspawn"; sleep 3; kill -9 "$nspawn" 2>/dev/null; rm -f "$D/nspawn.pid"
}

snap() { ct snap > "$D/snap-$1.txt"; }

# What stays after uninstall on purpose (README, "What stays after uninstall"): the
# person's config folder (kept when it was edited, with the list it names), the
# state in /var/lib/ncd, the `ncd` user, and /var/lib/ncd-root while it holds the
# person's files the guard moved aside during the period (guard-aside/; nothing
# else of ncd-root may stay).
KEPT='^/etc/\.pwd\.lock |^/etc/ncd(/| )|^/var/lib/ncd(/| )|^/var/lib/ncd-root D |^/var/lib/ncd-root/guard-aside(/| )|^/etc/(passwd|group|shadow|gshadow|subuid|subgid)-? '

# same_as SNAP: the system now is byte for byte as it was at SNAP (apart from KEPT).
same_as() {
  snap "after-$1"
  diff <(grep -vE "$KEPT" "$D/snap-$1.txt") <(grep -vE "$KEPT" "$D/snap-after-$1.txt") > "$D/diff-$1.txt"
  local rc=$?
  sed 's/^/  /' "$D/diff-$1.txt" | head -30 >>"$LLOG"
  return $rc
}

# check ID WHAT CMD: run CMD inside; PASS when it exits 0.
check() {
  local id=$1 what=$2 cmd=$3 status=FAIL
  printf '\n-- CHECK %s: %s\n$ %s\n' "$id" "$what" "$cmd" >>"$LLOG"
  ct "$cmd" >>"$LLOG" && status=PASS
  record "$id" "$status" "$what"
}
# host_check ID WHAT: the result of the last host-side command ($?).
host_check() {
  local rc=$? status=FAIL
  [ $rc = 0 ] && status=PASS
  record "$1" "$status" "$2"
}
record() {
  printf '%s\t%s\t%s\n' "$L.$1" "$2" "$3" >> "$RESULTS"
  printf '%s %-14s %s.%s  %s\n' "$(date -u +%T)" "$2" "$L" "$1" "$3" | tee -a "$LLOG"
}
not_run() { record "$1" NOT-RUN "$2"; }

# A fresh copy of the cached rootfs with the layout's packages and the person's
# own settings, the binaries in /opt/ncd (where `ncd install` takes them from).
prepare_rootfs() {
  rm -rf "$R"; mkdir -p "$D"
  cp -a "$CACHE/base" "$R"
  local pkgs=""
  case $L in resolved) pkgs=$LAYOUT_PKGS_resolved ;; nm) pkgs=$LAYOUT_PKGS_nm ;; esac
  if [ -n "$pkgs" ]; then
    # shellcheck disable=SC2086
    chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-download \
      --no-install-recommends $pkgs >>"$LLOG" 2>&1 || { lnote "installing $pkgs failed"; return 1; }
  fi
  mkdir -p "$R/opt/ncd" "$R/opt/ncd-live"
  cp "$HERE/inside.sh" "$R/opt/ncd-live/lib.sh"
  case $L in
  plain|deb)
    # The network's DHCP hook wrote this: network A's server and search domain.
    printf '# written by the DHCP client for network A\nnameserver 10.77.1.1\nsearch lan\n' > "$R/etc/resolv.conf" ;;
  resolved)
    # The person's own drop-in: a search domain of their own.
    mkdir -p "$R/etc/systemd/resolved.conf.d"
    printf '[Resolve]\nDomains=corp.example\n' > "$R/etc/systemd/resolved.conf.d/10-mine.conf" ;;
  nm)
    # NetworkManager with its own resolv.conf (no resolved), one connection per
    # network, each getting its address, DNS server and search domain by DHCP.
    mkdir -p "$R/etc/NetworkManager/conf.d" "$R/etc/NetworkManager/system-connections"
    printf '[main]\nno-auto-default=*\n' > "$R/etc/NetworkManager/conf.d/10-mine.conf"
    local n net
    for n in 1 2; do
      net=$([ $n = 1 ] && echo A || echo B)
      printf '[connection]\nid=net%s\ntype=ethernet\ninterface-name=lan%s\nautoconnect=%s\n\n[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=disabled\n' \
        "$net" "$net" "$([ $n = 1 ] && echo true || echo false)" > "$R/etc/NetworkManager/system-connections/net$net.nmconnection"
      chmod 600 "$R/etc/NetworkManager/system-connections/net$net.nmconnection"
    done
    rm -f "$R/etc/resolv.conf"; printf '# Generated by NetworkManager\n' > "$R/etc/resolv.conf" ;;
  esac
  [ "$L" = deb ] && cp "$DEB" "$R/root/ncd.deb"
  [ "$L" = deb ] || cp "$BIN/ncd" "$BIN/ncdd" "$R/opt/ncd/"
}

# Networks up and the laptop on network A (after every boot).
on_network_a() {
  local layout=$L; [ "$L" = deb ] && layout=plain
  c "net_up; join_net A $layout"
  case $L in
  nm) c 'eventually 20 sh -c "nmcli -t -f DEVICE,STATE dev | grep -qx lanA:connected"; nmcli -t dev' ;;
  resolved) c 'resolvectl status --no-pager | head -20' ;;
  esac
}

# The person's edit after install: their router as the upstream (the example's
# public resolvers are unreachable here, and never asked).
set_upstreams() {
  c "sed -i 's|^upstreams = .*|upstreams = $1|' /etc/ncd/ncd.toml; grep '^upstreams' /etc/ncd/ncd.toml"
}
ROUTER_A='["udp://10.77.1.1:53"]'

# ---------------------------------------------------------------- the layouts

resolver_file() { # the file the takeover wrote, for the drift check
  case $L in
  plain) echo /etc/resolv.conf ;;
  resolved) echo /etc/systemd/resolved.conf.d/99-ncd.conf ;;
  nm) echo /etc/NetworkManager/conf.d/99-ncd.conf ;;
  esac
}

# A check that the layout announces SERVER as the network's DNS now.
announced() {
  case $L in
  plain) echo "cat /var/lib/dhcp/*.leases | grep -q 'domain-name-servers $1;'" ;;
  resolved) echo "resolvectl dns | grep -q ' $1'" ;;
  nm) echo "nmcli -t -f IP4.DNS dev show | grep -q ':$1\$'" ;;
  esac
}

run_layout() {
  lnote "layout $L: preparing $R"
  prepare_rootfs || { not_run setup "the rootfs for $L could not be prepared"; return; }
  boot || { not_run boot "the container did not boot"; halt; return; }
  on_network_a

  check baseline "before ncd: network A's printer.lan and example.org resolve (the harness works)" \
    'eventually 15 sys_resolves printer.lan 10.77.1.9 && sys_resolves example.org 10.77.1.80 && ! sys_blocked www.instagram.com'

  # --- install
  snap before
  c '/opt/ncd/ncd install --dry-run'
  same_as before; host_check install.dry-run "ncd install --dry-run changes nothing"
  check install "ncd install succeeds" '/opt/ncd/ncd install'
  set_upstreams "$ROUTER_A"
  check install.units "the sockets and the guard are active after install" "all_active ncd.socket ncd-control.socket ncd-guard.path ncd-guard.timer"
  check install.idempotent "a second ncd install changes nothing" \
    'snap > /run/s1; ncd install >/dev/null; snap > /run/s2; diff /run/s1 /run/s2'

  # --- queries
  check query.blocked "a blocked name is blocked by ncdd and through the system resolver" \
    'ncdd_blocks www.instagram.com && sys_blocked www.instagram.com && sys_blocked facebook.com'
  check query.allowed "an allowed name resolves through the system (after the upstream edit reloads)" \
    'eventually 15 sys_resolves example.org 10.77.1.80'
  case $L in
  plain|nm) check local.search-kept "finding 5: the search domain survives the takeover (short name 'printer')" \
    'cat /etc/resolv.conf; eventually 5 sys_resolves printer 10.77.1.9' ;;
  resolved)
    check local.search-kept "finding 5: the person's own drop-in domain (corp.example) survives the takeover" \
      'resolvectl domain; resolvectl domain | grep "^Global:" | grep -qw corp.example' ;;
  esac

  # --- a laptop moving between two networks, with upstreams = ["system"]
  c 'cp -a /etc/resolv.conf /run/ncd-resolv.conf'
  set_upstreams '["system"]'
  check system.accepted 'upstreams = ["system"] is accepted by ncd config check and ncdd' \
    'ncd config check /etc/ncd/ncd.toml >/dev/null && sleep 2 && ! ncd status | grep -qiE "config.*(error|not load|invalid)"'
  local accepted='ncd config check /etc/ncd/ncd.toml >/dev/null'
  check system.netA-local "on network A, printer.lan resolves to A's printer through ncdd and the system" \
    "$accepted && eventually 15 answer_is 127.0.0.1 printer.lan 10.77.1.9 && sys_resolves printer.lan 10.77.1.9"
  check system.netA-blocked "on network A, blocked names stay blocked" \
    "$accepted && ncdd_blocks www.instagram.com && sys_blocked www.instagram.com"
  c "join_net B $L"
  check net.on-B "harness: on network B, B's server answers and the layout announces it" \
    "answer_is 10.77.2.1 printer.lan 10.77.2.9 && $(announced 10.77.2.1)"
  check system.netB-local "moved to network B: printer.lan is B's printer, example.org comes from B" \
    "$accepted && eventually 20 answer_is 127.0.0.1 printer.lan 10.77.2.9 && eventually 20 sys_resolves printer.lan 10.77.2.9 && answer_is 127.0.0.1 example.org 10.77.2.80"
  check system.netB-blocked "on network B, blocked names stay blocked (through the system too)" \
    "$accepted && ncdd_blocks www.instagram.com && eventually 75 sys_blocked www.instagram.com"
  c "join_net A $L"
  check net.on-A "harness: back on network A, A's server answers and the layout announces it" \
    "answer_is 10.77.1.1 printer.lan 10.77.1.9 && $(announced 10.77.1.1)"
  check system.back-on-A "back on network A: A's printer again" \
    "$accepted && eventually 20 answer_is 127.0.0.1 printer.lan 10.77.1.9 && eventually 20 sys_resolves printer.lan 10.77.1.9"
  # Whatever the networks did to resolv.conf, the rest starts from ncd's.
  c 'cmp -s /run/ncd-resolv.conf /etc/resolv.conf || { echo "harness: putting ncd'"'"'s resolv.conf back"; rm -f /etc/resolv.conf; cp -a /run/ncd-resolv.conf /etc/resolv.conf; }'
  set_upstreams "$ROUTER_A"
  c 'eventually 15 answer_is 127.0.0.1 example.org 10.77.1.80'

  # --- the period and the guard
  check period.start "ncd start begins a period" \
    "ncd start --for $PERIOD --reason 'live test' && period_active"
  check f4.stop-refused-at-start "finding 4: stopping ncd is refused from the moment the period starts" \
    'refused systemctl stop ncd.socket ncd-control.socket ncd.service; r=$?; all_active ncd.socket ncd-control.socket && [ $r = 0 ]'
  c 'systemctl start ncd.socket ncd-control.socket ncd.service; eventually 10 ncdd_blocks www.instagram.com'
  check guard.stop-refused "after the guard ran: stopping ncd.service or its sockets is refused" \
    'eventually 90 test -e /etc/systemd/system/ncd.service.d/50-period.conf; refused systemctl stop ncd.service && refused systemctl stop ncd.socket && refused systemctl stop ncd-control.socket && all_active ncd.socket ncd-control.socket ncd.service'
  c 'systemctl start ncd.socket ncd-control.socket ncd.service'
  check guard.kill9 "ncdd killed with SIGKILL comes back and still blocks" \
    'p=$(systemctl show -P MainPID ncd.service); kill -9 $p; sleep 1; eventually 15 ncdd_blocks www.instagram.com && [ "$(systemctl show -P MainPID ncd.service)" != "$p" ]'
  check guard.reload "systemctl reload ncd.service works during a period" \
    'systemctl reload ncd.service && eventually 10 ncdd_blocks www.instagram.com'
  check f4.guard-units-stop-refused "finding 4: ncd-guard.timer and ncd-guard.path cannot be stopped during a period" \
    'refused systemctl stop ncd-guard.timer; r1=$?; refused systemctl stop ncd-guard.path; r2=$?; all_active ncd-guard.timer ncd-guard.path && [ $r1$r2 = 00 ]'
  c 'systemctl start ncd-guard.timer ncd-guard.path'

  local own; own=$(resolver_file)
  check guard.own-file "the takeover's own file ($own) edited: put back, and shown in ncd status" \
    "status_mark; cp -a $own /run/own.orig; if [ $L = plain ]; then printf 'nameserver 10.77.1.1\nsearch lan\n' > $own; else sed -i 's/ ~instagram.com//; s/127.0.0.1/10.77.1.1/' $own; fi; eventually 30 cmp -s /run/own.orig $own && eventually 15 status_new '$own had been changed; ncd put it back' && eventually 15 sys_blocked www.instagram.com"
  c "cmp -s /run/own.orig $own || { rm -f $own; cp -a /run/own.orig $own; }"

  check f4.hosts-line "finding 4: a blocked name added to /etc/hosts is removed during the period and shown in ncd status" \
    'status_mark; cp -a /etc/hosts /run/hosts.orig; echo "10.77.1.66 www.instagram.com instagram.com" >> /etc/hosts; eventually 75 sys_blocked www.instagram.com && eventually 15 status_new "/etc/hosts gives .*instagram.com.*ncd removed those names"'
  c 'cmp -s /run/hosts.orig /etc/hosts || cat /run/hosts.orig > /etc/hosts'

  case $L in
  resolved)
    check f4.later-dropin "finding 4: a later resolved drop-in (zz-mine.conf, DNS= Domains=~.) is undone and shown in ncd status" \
      'status_mark; printf "[Resolve]\nDNS=\nDNS=10.77.1.1\nDomains=\nDomains=~.\n" > /etc/systemd/resolved.conf.d/zz-mine.conf; systemctl restart systemd-resolved; sleep 2; resolvectl dns; eventually 75 sys_blocked www.instagram.com && eventually 15 status_new "zz-mine.conf sets DNS servers.*ncd moved it aside"'
    c 'rm -f /etc/systemd/resolved.conf.d/zz-mine.conf; systemctl restart systemd-resolved; join_net A resolved; resolvectl flush-caches' ;;
  nm)
    check f4.nm-global-dns "finding 4: the person's own NetworkManager global DNS (zz-mine.conf) is undone and shown in ncd status" \
      'status_mark; printf "[global-dns-domain-*]\nservers=10.77.1.1\n" > /etc/NetworkManager/conf.d/zz-mine.conf; nmcli general reload; sleep 2; cat /etc/resolv.conf; eventually 75 sys_blocked www.instagram.com && eventually 15 status_new "zz-mine.conf sets NetworkManager.s DNS.*ncd moved it aside"'
    c 'rm -f /etc/NetworkManager/conf.d/zz-mine.conf; nmcli general reload' ;;
  esac
  case $L in
  resolved|nm)
    check f4.resolvconf-replaced "finding 4: /etc/resolv.conf replaced by a plain file is put back and shown in ncd status" \
      'status_mark; cp -a /etc/resolv.conf /run/resolv.orig; rm -f /etc/resolv.conf; printf "nameserver 10.77.1.1\n" > /etc/resolv.conf; eventually 75 sys_blocked www.instagram.com && eventually 15 status_new "/etc/resolv.conf (was replaced|names).*ncd (linked|wrote) it"'
    c 'rm -f /etc/resolv.conf; cp -a /run/resolv.orig /etc/resolv.conf; ls -l /etc/resolv.conf' ;;
  esac

  # --- reboot during the period
  c 'ncd status --json | grep -E "served_secs|\"active\""'
  lnote "reboot (poweroff, boot again)"
  halt; boot || { not_run reboot "the container did not boot again"; return; }
  check f4.stop-refused-at-boot "finding 4: right after boot, stopping ncd is refused (before the guard's first tick)" \
    'refused systemctl stop ncd.socket ncd-control.socket ncd.service; r=$?; all_active ncd.socket ncd-control.socket && [ $r = 0 ]'
  c 'systemctl start ncd.socket ncd-control.socket ncd.service'
  on_network_a
  check reboot.period-held "after the reboot the period still runs and blocks" \
    'period_active && ncdd_blocks www.instagram.com && eventually 15 sys_blocked www.instagram.com'
  check uninstall.refused "ncd uninstall is refused during the period and changes nothing" \
    'ncd uninstall; r=$?; test -e /var/lib/ncd-root/install-manifest.json && all_active ncd.socket ncd-control.socket && [ $r != 0 ]'

  # --- the end of the period, and uninstall at once
  lnote "waiting for the period to end"
  c 'eventually 900 period_over; date -u +%T'
  # Finding 1 is a race with the guard's tick: the log says whether the stop refusal
  # was still in place when uninstall began (if not, the race was not exercised).
  check f1.uninstall-after-end "finding 1: ncd uninstall right after the period ends removes everything (no unit left running)" \
    'echo "  stop refusal still in place before uninstall: $(test -e /etc/systemd/system/ncd.service.d/50-period.conf && echo yes || echo no)"; ncd uninstall; rc=$?; echo "  rc=$rc"; find /etc/systemd/system /run/systemd/system -path "*ncd*"; pgrep -a ncdd; [ $rc = 0 ] && none_active $NCD_UNITS && ! pgrep -x ncdd >/dev/null && ! find /etc/systemd/system /run/systemd/system -path "*/ncd*.d/*" | grep -q . && ! test -e /var/lib/ncd-root/install-manifest.json'
  check f6.run-dirs "finding 6: no empty ncd*.d folders are left in /run/systemd/system or /etc/systemd/system" \
    '! ls -d /run/systemd/system/ncd*.d /etc/systemd/system/ncd*.d 2>/dev/null'
  same_as before; host_check uninstall.byte-exact "after uninstall /etc, /usr/local, /var/lib are byte for byte as before install (apart from the kept config, state and user)"
  check f6.list-kept "finding 6: the edited config is kept, and so is the list it names" \
    'ls -l /etc/ncd /etc/ncd/lists 2>&1; test -f /etc/ncd/ncd.toml && test -f /etc/ncd/lists/social.hosts && /opt/ncd/ncd config check /etc/ncd/ncd.toml >/dev/null'
  check uninstall.dns-back "after uninstall the network's DNS answers as before ncd" \
    'eventually 15 sys_resolves example.org 10.77.1.80 && sys_resolves www.instagram.com 10.77.1.66'
  halt
}

# The package: dpkg -i, `ncd install` beside it, `ncd uninstall`, dpkg -r in a period, purge.
run_deb() {
  lnote "layout deb: preparing $R"
  prepare_rootfs || { not_run setup "the rootfs could not be prepared"; return; }
  boot || { not_run boot "the container did not boot"; halt; return; }
  on_network_a
  snap before
  local units="ncd.socket ncd-control.socket ncd-guard.path ncd-guard.timer"
  local reinstall="dpkg-query -W -f='\${Status}' ncd | grep -q 'install ok installed' || { echo 'harness: installing the package again'; dpkg -i /root/ncd.deb; }; systemctl start ncd.socket ncd-control.socket ncd.service"
  check install "dpkg -i: units enabled and active, ncdd runs as ncd and blocks" \
    "dpkg -i /root/ncd.deb && systemctl is-enabled $units && all_active $units && eventually 10 ncdd_blocks www.instagram.com && ps -o user= -C ncdd | grep -qx ncd"
  set_upstreams "$ROUTER_A"
  check f3.install-uses-package "finding 3: ncd install beside the package uses its binaries and units" \
    'ncd install; systemctl show ncd.service -p FragmentPath -p ExecStart | cut -c1-120; ls -l /usr/local/bin; systemctl show -P FragmentPath ncd.service | grep -qE "^/(usr/)?lib/systemd/system/" && systemctl show -P ExecStart ncd.service | grep -q "path=/usr/bin/ncdd" && ! test -e /usr/local/bin/ncdd && eventually 15 sys_blocked www.instagram.com'
  check f3.uninstall-keeps-package "finding 3: ncd uninstall leaves the package's units enabled and DNS answering" \
    "ncd uninstall; systemctl is-enabled $units; dpkg-query -W -f='\${Status}\n' ncd; all_active ncd.socket ncd-control.socket && eventually 10 ncdd_blocks www.instagram.com && systemctl is-enabled -q ncd.socket && dpkg-query -W -f='\${Status}' ncd | grep -q 'install ok installed'"
  c "systemctl enable --now $units"
  check prerm-refuses "dpkg -r during a period (ncdd answering) is refused" \
    "ncd start --for $PERIOD --reason 'package test'; period_active && ! timeout 120 dpkg -r ncd && dpkg-query -W -f='\${Status}' ncd | grep -q 'install ok installed'"
  c "$reinstall"
  check f2.prerm-reads-state "finding 2: dpkg -r during a period is refused when ncdd is not answering" \
    "systemctl stop ncd.socket ncd-control.socket ncd.service; echo \"  stop rc=\$?\"; p=\$(pgrep -x ncdd) && kill -STOP \$p; timeout 120 dpkg -r ncd; rc=\$?; [ -n \"\$p\" ] && kill -CONT \$p; [ \$rc != 0 ] && dpkg-query -W -f='\${Status}' ncd | grep -q 'install ok installed'"
  c "$reinstall; period_active"
  lnote "waiting for the period to end"
  c 'eventually 900 period_over; date -u +%T'
  check purge "finding 1 (package): dpkg --purge right after the period ends removes the package and stops its units" \
    "echo \"  stop refusal still in place before purge: \$(test -e /etc/systemd/system/ncd.service.d/50-period.conf && echo yes || echo no)\"; dpkg --purge ncd && none_active $units ncd.service && ! pgrep -x ncdd"
  same_as before; host_check byte-exact "after purge the system is byte for byte as before (apart from the state and the user)"
  check dns-back "after purge the network's DNS answers as before" \
    'eventually 15 sys_resolves example.org 10.77.1.80'
  halt
}

one_layout() {
  L=$1; D=$WORK/$L; R=$D/rootfs; mkdir -p "$D"; LLOG=$D/log.txt; RESULTS=$D/results.tsv
  : > "$LLOG"; : > "$RESULTS"
  local t0=$SECONDS
  if [ "$L" = deb ]; then run_deb; else run_layout; fi
  lnote "layout $L done in $(( (SECONDS - t0) / 60 ))m$(( (SECONDS - t0) % 60 ))s (log: $LLOG)"
}

# Never leave a container running behind us (only the ones this run started).
cleanup() {
  local f nspawn
  for f in "$WORK"/*/nspawn.pid; do
    [ -f "$f" ] || continue
    nspawn=$(cat "$f"); kill -0 "$nspawn" 2>/dev/null || continue
    L=$(basename "$(dirname "$f")"); D=$(dirname "$f"); LLOG=$D/log.txt
    halt
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- main

T0=$SECONDS
note "ncd live test of $MAIN ($(cd "$MAIN" && git rev-parse --short HEAD 2>/dev/null)), layouts: $LAYOUTS"
prepare_host || { echo "could not install the host tools"; exit 2; }
build_base || exit 2
prepare_binaries || exit 2
case " $LAYOUTS " in *" deb "*) prepare_deb || LAYOUTS=${LAYOUTS//deb/} ;; esac

for layout in $LAYOUTS; do
  if [ "$PARALLEL" = 1 ]; then one_layout "$layout" & else one_layout "$layout"; fi
done
wait

SUMMARY=$WORK/summary.txt
{
  printf '\nncd live test: %s at %s, %s binaries, %s\n' "$MAIN" "$(cd "$MAIN" && git rev-parse --short HEAD 2>/dev/null)" "$PROFILE" "$(date -u '+%F %T UTC')"
  printf '%-48s %-14s %s\n' CHECK RESULT WHAT
  for layout in $LAYOUTS; do
    awk -F'\t' '{ printf "%-48s %-14s %s\n", $1, $2, $3 }' "$WORK/$layout/results.tsv" 2>/dev/null
  done
  printf '\n'
  for s in PASS FAIL NOT-RUN; do
    printf '%s %s   ' "$s" "$(cat "$WORK"/*/results.tsv 2>/dev/null | awk -F'\t' -v s="$s" '$2 == s' | wc -l)"
  done
  printf '\nwall time %dm%02ds; logs in %s/<layout>/log.txt\n' $(( (SECONDS - T0) / 60 )) $(( (SECONDS - T0) % 60 )) "$WORK"
} | tee "$SUMMARY"
! grep -q $'\tFAIL\t\|\tNOT-RUN\t' "$WORK"/*/results.tsv 2>/dev/null
