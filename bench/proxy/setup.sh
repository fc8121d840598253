#!/usr/bin/env bash
# Install what bench/proxy.sh needs. Idempotent.
#
# - apt: nginx-light (the origin), nghttp2-client (h2load), dnsmasq-base (the DNS
#   upstream that tells ncdd's proxy where the origin is), curl, openssl, python3.
#   nginx-light comes with a system service the benchmark never uses: on a systemd
#   machine it is kept from starting and left disabled (proxy.sh runs its own nginx
#   on a loopback address).
# - PyPI: mitmproxy (pinned) in a venv at bench/proxy/.venv (gitignored), made with
#   the newest python3.1x found (mitmproxy 12 needs Python >= 3.12).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mitmproxy_version="12.3.1"
packages=(nginx-light nghttp2-client dnsmasq-base curl openssl python3 util-linux procps coreutils)

missing=()
for package in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$package")
done
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
if [ ${#missing[@]} -gt 0 ]; then
    hold=()
    if [ -d /run/systemd/system ]; then
        for package in "${missing[@]}"; do
            case "$package" in nginx-light) hold+=(nginx.service) ;; esac
        done
    fi
    # A runtime mask (gone at reboot) stops the package's postinst from starting it.
    [ ${#hold[@]} -eq 0 ] || "${sudo[@]}" systemctl mask --runtime "${hold[@]}" >/dev/null 2>&1 || true
    echo "setup.sh: installing ${missing[*]}"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    if [ ${#hold[@]} -gt 0 ]; then
        "${sudo[@]}" systemctl unmask --runtime "${hold[@]}" >/dev/null 2>&1 || true
        "${sudo[@]}" systemctl disable --now "${hold[@]}" >/dev/null 2>&1 || true
        echo "setup.sh: left ${hold[*]} disabled and stopped (bench/proxy.sh runs its own nginx)"
    fi
else
    echo "setup.sh: apt packages present: ${packages[*]}"
fi

venv="$here/.venv"
if [ -x "$venv/bin/mitmdump" ] && "$venv/bin/mitmdump" --version 2>/dev/null | grep -q "Mitmproxy: $mitmproxy_version"; then
    echo "setup.sh: mitmproxy $mitmproxy_version present in $venv"
    exit 0
fi
python=""
for candidate in python3.14 python3.13 python3.12 python3; do
    path="$(command -v "$candidate" || true)"
    [ -n "$path" ] || continue
    if "$path" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
        python="$path"
        break
    fi
done
# pyenv keeps versions out of PATH unless selected.
if [ -z "$python" ] && [ -d "${PYENV_ROOT:-$HOME/.pyenv}/versions" ]; then
    python="$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V | tail -n 1 || true)"
fi
[ -n "$python" ] || {
    echo "setup.sh: mitmproxy $mitmproxy_version needs Python >= 3.12; none found (install one, or run bench/proxy.sh --paths 'direct ncd')" >&2
    exit 1
}
echo "setup.sh: mitmproxy $mitmproxy_version into $venv with $python"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "mitmproxy==$mitmproxy_version"
echo "setup.sh: done"
