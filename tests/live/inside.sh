# tests/live/inside.sh: helpers the live test runs *inside* the container (copied to
# /opt/ncd-live/lib.sh and sourced before every command). Each check is a shell
# condition: exit status 0 means what a person would notice is true.
#
# The two simulated networks (see net_up): network A on link lanA (10.77.1.0/24) and
# network B on link lanB (10.77.2.0/24), each a network namespace with a dnsmasq that
# serves its own printer.lan, an "internet" name (example.org) and a real-looking
# answer for instagram.com (10.77.x.66), so a blocked name that leaks past ncd shows.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# eventually SECS CMD…: CMD until it succeeds, for at most SECS seconds.
eventually() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  while :; do
    "$@" && return 0
    [ "$SECONDS" -ge "$end" ] && return 1
    sleep 1
  done
}

# The A answers of NAME from SERVER (a space-separated list; empty when none).
a_of() { dig +short +time=2 +tries=1 @"$1" "$2" A 2>/dev/null | grep -v '^;' | tr '\n' ' '; }

# answer_is SERVER NAME IP: SERVER answers NAME with IP.
answer_is() {
  local got; got=$(a_of "$1" "$2")
  echo "  dig @$1 $2 -> ${got:-<none>}"
  case " $got " in *" $3 "*) return 0 ;; *) return 1 ;; esac
}

# ncdd itself blocks NAME.
ncdd_blocks() { answer_is 127.0.0.1 "$1" 0.0.0.0; }

# What the system resolves NAME to: glibc (getent: nss, resolved or resolv.conf) and
# a stub that reads /etc/resolv.conf (dig without @).
sys_answers() {
  local g d
  g=$(timeout 10 getent ahostsv4 "$1" | awk '{print $1}' | sort -u | tr '\n' ' ')
  d=$(timeout 10 dig +short +time=2 +tries=1 "$1" A 2>/dev/null | grep -v '^;' | tr '\n' ' ')
  echo "  getent $1 -> ${g:-<none>}; dig (resolv.conf) $1 -> ${d:-<none>}"
  SYS_GETENT=" $g "; SYS_DIG=" $d "
}

# The system blocks NAME: both paths answer 0.0.0.0 and neither gives the network's answer.
sys_blocked() {
  sys_answers "$1"
  case "$SYS_GETENT$SYS_DIG" in *10.77.*) return 1 ;; esac
  case "$SYS_GETENT" in *" 0.0.0.0 "*) ;; *) return 1 ;; esac
  case "$SYS_DIG" in *" 0.0.0.0 "*) ;; *) return 1 ;; esac
}

# The system (glibc) resolves NAME to IP.
sys_resolves() {
  sys_answers "$1"
  case "$SYS_GETENT" in *" $2 "*) return 0 ;; *) return 1 ;; esac
}

# ncd status, as text and JSON. status_mark remembers it; status_new REGEX says
# whether more lines match REGEX now than at the mark (a new journal entry, a new
# repair, a new warning: the same repair twice in a minute is a line seen twice).
STATUS_MARK=/run/ncd-live-status.mark
status_text() { ncd status 2>&1; ncd status --json 2>&1; }
status_mark() { status_text > "$STATUS_MARK"; }
status_new() {
  local now before after
  now=$(status_text)
  before=$(grep -ciE -- "$1" "$STATUS_MARK")
  after=$(printf '%s\n' "$now" | grep -ciE -- "$1")
  printf '  new in ncd status:\n%s\n' "$(printf '%s\n' "$now" | grep -vxF -f "$STATUS_MARK" | grep -v '^\s*$' | sed 's/^/    /' | head -20)"
  echo "  lines matching: $before at the mark, $after now"
  [ "$after" -gt "$before" ]
}

period_active() { ncd status --json 2>/dev/null | grep -q '"active": true'; }
# ncdd answers, and says no period runs (not merely that it cannot be asked).
period_over() { local j; j=$(ncd status --json 2>/dev/null) && ! grep -q '"active": true' <<<"$j" && grep -q '"active": false' <<<"$j"; }

# refused CMD…: CMD fails (a stop the period refuses).
refused() { if "$@"; then echo "  '$*' was allowed"; return 1; else echo "  '$*' was refused"; fi; }

all_active() {
  local u ok=0
  for u in "$@"; do
    printf '  %s: %s\n' "$u" "$(systemctl is-active "$u")"
    systemctl is-active -q "$u" || ok=1
  done
  return $ok
}

none_active() {
  local u ok=0
  for u in "$@"; do
    printf '  %s: %s\n' "$u" "$(systemctl is-active "$u")"
    systemctl is-active -q "$u" && ok=1
  done
  return $ok
}

NCD_UNITS="ncd.socket ncd-control.socket ncd.service ncd-guard.path ncd-guard.timer"

# The two networks: a namespace each, a veth into it, a dnsmasq on its side.
net_up() {
  local n net
  for n in 1 2; do
    net=net$([ $n = 1 ] && echo A || echo B)
    ip netns add "$net" 2>/dev/null || true
    ip link show "lan${net#net}" >/dev/null 2>&1 ||
      ip link add "lan${net#net}" type veth peer name eth0 netns "$net"
    ip -n "$net" addr replace 10.77.$n.1/24 dev eth0
    ip -n "$net" link set eth0 up
    ip -n "$net" link set lo up
    pkill -F "/run/dnsmasq-$net.pid" 2>/dev/null
    # DHCP too (NetworkManager's connections ask it): the one address .2, this
    # server for DNS, search domain lan, and no router (nothing may leave).
    ip netns exec "$net" dnsmasq --conf-file=/dev/null --no-resolv --no-hosts --user=root \
      --listen-address=10.77.$n.1 --bind-interfaces --pid-file="/run/dnsmasq-$net.pid" \
      --address=/printer.lan/10.77.$n.9 --address=/example.org/10.77.$n.80 \
      --address=/instagram.com/10.77.$n.66 --address=/facebook.com/10.77.$n.66 \
      --dhcp-range=10.77.$n.2,10.77.$n.2,255.255.255.0,12h --dhcp-option=option:router \
      --dhcp-option=option:domain-search,lan --dhcp-leasefile="/run/dnsmasq-$net.leases"
  done
}

# join_net A|B plain|resolved|nm: the laptop is on that network now: its link up
# with an address, the other down, and the network's DNS announced where the layout
# keeps it: resolved's per-link DNS (`resolvectl`), NetworkManager's connection (its
# DHCP lease), or on the plain layout the ISC DHCP client's lease files (the released
# link's lease gone). These are what ncdd's `upstreams = ["system"]` reads
# (daemon/src/network/); after the takeover /etc/resolv.conf names ncdd only.
join_net() {
  local to=$1 layout=$2 from n
  from=$([ "$to" = A ] && echo B || echo A); n=$([ "$to" = A ] && echo 1 || echo 2)
  case $layout in
  nm)
    nmcli con down "net$from" >/dev/null 2>&1
    nmcli con up "net$to" ;;
  *)
    [ "$layout" = resolved ] && resolvectl revert "lan$from" 2>/dev/null
    ip addr flush dev "lan$from"; ip link set "lan$from" down
    ip addr replace 10.77.$n.2/24 dev "lan$to"; ip link set "lan$to" up
    if [ "$layout" = resolved ]; then
      resolvectl dns "lan$to" 10.77.$n.1 && resolvectl domain "lan$to" lan
      # resolved takes a moment to see the link up with an address.
      eventually 15 link_has_dns "lan$to"
    fi
    if [ "$layout" = plain ]; then
      mkdir -p /var/lib/dhcp
      : > "/var/lib/dhcp/dhclient.lan$from.leases"
      printf 'lease {\n  interface "lan%s";\n  fixed-address 10.77.%s.2;\n  option subnet-mask 255.255.255.0;\n  option domain-name-servers 10.77.%s.1;\n  option domain-search "lan";\n  renew 4 2099/12/31 00:00:00;\n  rebind 4 2099/12/31 00:00:00;\n  expire 4 2099/12/31 00:00:00;\n}\n' \
        "$to" "$n" "$n" > "/var/lib/dhcp/dhclient.lan$to.leases"
    fi ;;
  esac
}

# resolved uses LINK's DNS servers (it saw the link up, with an address).
link_has_dns() { resolvectl status "$1" 2>/dev/null | grep -q 'Current Scopes: DNS'; }

# The state of the system a person would call "mine": path, type, mode and owner,
# checksum (or link target) of everything under /etc, /usr/local, /var/lib, except
# what the system itself churns.
snap() {
  find /etc /usr/local /var/lib /usr/lib/systemd/system -xdev \( -type f -o -type l \) 2>/dev/null |
    grep -vE '^/var/lib/(dpkg|apt|ucf|dbus|NetworkManager|dhcp|systemd/(random-seed|timers|catalog|deb-systemd|timesync|pstore|coredump))|^/etc/(ld.so.cache|machine-id|mtab)$' |
    sort -u | while read -r p; do
      if [ -L "$p" ]; then echo "$p L $(readlink "$p")"
      else echo "$p F $(stat -c %a:%U:%G "$p") $(sha256sum < "$p" | cut -c1-16)"; fi
    done
  find /etc /usr/local /var/lib -xdev -type d 2>/dev/null |
    grep -vE '^/var/lib/(dpkg|apt|ucf|NetworkManager|dhcp|systemd/(timers|catalog|deb-systemd|pstore|coredump))' |
    sort | while read -r d; do echo "$d D $(stat -c %a:%U:%G "$d")"; done
}
