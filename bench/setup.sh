#!/usr/bin/env bash
# Install what bench/ needs, from apt (Debian/Ubuntu). Idempotent: does nothing when
# everything is present, and installs only what is missing otherwise.
#
# unbound and nsd come with system services the benchmark never uses (run.sh starts
# its own instances on loopback ports). When this script installs them on a systemd
# machine, it keeps those services from starting and leaves them disabled, so a bench
# setup never takes over port 53 or the machine's resolver. dnsmasq comes from
# dnsmasq-base: the binary without a service.
set -euo pipefail

packages=(dnsperf unbound dnsmasq-base nsd dnsutils python3 util-linux procps coreutils)

missing=()
for package in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup.sh: everything is installed: ${packages[*]}"
    exit 0
fi

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)

# Only services of packages installed now are held back; existing ones are left alone.
hold=()
if [ -d /run/systemd/system ]; then
    for package in "${missing[@]}"; do
        case "$package" in
            unbound) hold+=(unbound.service unbound-resolvconf.service) ;;
            nsd) hold+=(nsd.service) ;;
        esac
    done
fi
if [ ${#hold[@]} -gt 0 ]; then
    # A runtime mask (gone at reboot) stops the packages' postinst from starting them.
    "${sudo[@]}" systemctl mask --runtime "${hold[@]}" >/dev/null 2>&1 || true
fi

echo "setup.sh: installing ${missing[*]}"
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

if [ ${#hold[@]} -gt 0 ]; then
    "${sudo[@]}" systemctl unmask --runtime "${hold[@]}" >/dev/null 2>&1 || true
    "${sudo[@]}" systemctl disable --now "${hold[@]}" >/dev/null 2>&1 || true
    echo "setup.sh: left ${hold[*]} disabled and stopped (bench/run.sh runs its own instances)"
fi
echo "setup.sh: done"
