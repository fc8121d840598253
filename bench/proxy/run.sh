#!/usr/bin/env bash
# The companion proxy, measured: direct to an nginx origin, through ncdd's proxy, and
# through mitmproxy, side by side. See bench/README.md ("The proxy").
#
#   bench/proxy.sh                                       # 3 repeats of -D 8
#   bench/proxy.sh --duration 3 --repeats 1              # smoke test
#
# Loopback only (the origin on 127.77.0.2:443, everything else on 127.0.0.1); every
# h2load run is bounded by --duration and a hard timeout; every process started
# here is stopped on exit or interrupt, and the temp dir removed.
set -euo pipefail
export LC_ALL=C

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$(dirname "$here")"
repo="$(dirname "$bench")"

duration=8
repeats=3
warmup=2
paths="direct ncd mitmproxy"
protocols="h1 h2-10 h2-100"
resources="html json image"
conn_batch=100
idle_connections=1000
server_cpu=0
client_cpu=1
ncdd_bin="${NCDD:-$repo/target/release/ncdd}"
ncdd_wrap=""
mitmdump_bin="${MITMDUMP:-$here/.venv/bin/mitmdump}"
# The origin's own loopback address: port 443 is where ncdd's proxy forwards to.
origin_ip="127.77.0.2"
site_host="www.instagram.com"
# The other hosts of the site that ncdd steers (first connections mint a leaf each).
mint_hosts="www.instagram.com instagram.com i.instagram.com"

usage() {
    cat <<EOF
usage: bench/proxy.sh [options]
  --duration 8          seconds per measured h2load run (h2load -D)
  --repeats 3           runs of everything; the report shows median and range
  --warmup 2            seconds of unrecorded h2load before each measured run
  --paths "$paths"
  --protocols "$protocols"   h1: HTTP/1.1 keep-alive, 10 connections; h2-N: HTTP/2, N streams on one connection
  --resources "$resources"   html: 8 KiB page, json: 4 KiB API answer, image: 200 KiB
  --conn-batch 100      connections opened at once in the new-connection runs
  --idle 1000           idle keep-alive TLS connections for the RSS figure (0 skips)
  --ncdd PATH           the ncdd binary (default target/release/ncdd, or \$NCDD)
  --wrap "CMD ARGS"     run ncdd under CMD for a profile (e.g. "valgrind --tool=massif
                        --massif-out-file=/tmp/ncdd.massif"); figures are then not comparable
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --duration|-D) duration="$2"; shift 2 ;;
        --repeats|-n) repeats="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --paths) paths="$2"; shift 2 ;;
        --protocols) protocols="$2"; shift 2 ;;
        --resources) resources="$2"; shift 2 ;;
        --conn-batch) conn_batch="$2"; shift 2 ;;
        --idle) idle_connections="$2"; shift 2 ;;
        --ncdd) ncdd_bin="$2"; shift 2 ;;
        --wrap) ncdd_wrap="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "proxy.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

die() {
    echo "proxy.sh: $*" >&2
    exit 1
}
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# --- prerequisites ----------------------------------------------------------------
PATH="$PATH:/usr/sbin:/sbin"
for tool in nginx h2load dnsmasq curl openssl taskset python3 awk; do
    command -v "$tool" >/dev/null || die "$tool not found: run bench/proxy/setup.sh"
done
for path in $paths; do
    case "$path" in
        direct) ;;
        ncd) [ -x "$ncdd_bin" ] || die "no ncdd at $ncdd_bin: run cargo build --release -p ncd-daemon" ;;
        mitmproxy) [ -x "$mitmdump_bin" ] || die "no mitmdump at $mitmdump_bin: run bench/proxy/setup.sh" ;;
        *) die "unknown path $path (direct, ncd, mitmproxy)" ;;
    esac
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (server on CPU $server_cpu, h2load on CPU $client_cpu)"
# nginx listens on port 443 (ncdd's proxy forwards there and nowhere else).
[ "$(id -u)" -eq 0 ] || die "needs root: the origin listens on $origin_ip:443"
# (SO_REUSEADDR as nginx sets it: connections of a previous run in TIME_WAIT do not count.)
python3 -c "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('$origin_ip', 443))" 2>/dev/null ||
    die "$origin_ip:443 is taken (something listens on port 443 of every address?)"
# 1,000 idle connections through a proxy take 2,000+ descriptors on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# --- temp dir, processes, cleanup -----------------------------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/ncd-proxy-bench.XXXXXX")"
# nginx's workers run as nobody and read the site from here.
chmod 755 "$tmp"
pids=()

descendants() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null || true); do
        echo "$child"
        descendants "$child"
    done
}

stop_pid() {
    local pid="$1" children i
    children="$(descendants "$pid")"
    kill -TERM "$pid" $children 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" $children 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local kept=()
    for i in "${pids[@]}"; do [ "$i" = "$pid" ] || kept+=("$i"); done
    pids=("${kept[@]+"${kept[@]}"}")
}

cleanup() {
    local pid
    for pid in "${pids[@]+"${pids[@]}"}"; do stop_pid "$pid"; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# start NAME CPU COMMAND...: runs COMMAND pinned to CPU in the background; sets started_pid.
start() {
    local name="$1" cpu="$2"
    shift 2
    taskset -c "$cpu" "$@" >"$tmp/$name.log" 2>&1 &
    started_pid=$!
    pids+=("$started_pid")
}

free_port() {
    python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}

# wait_port HOST PORT PID NAME: until a TCP connect succeeds (no TLS: no leaf is minted).
wait_port() {
    local host="$1" port="$2" pid="$3" name="$4" i
    for i in $(seq 600); do
        (: <"/dev/tcp/$host/$port") 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$tmp/$name.log" >&2; die "$name exited before serving (log above)"; }
        sleep 0.1
    done
    die "$name does not listen on $host:$port after 60 s"
}

clk_tck="$(getconf CLK_TCK)"
cpu_ticks() {
    local total=0 pid p t
    for pid in "$@"; do
        [ -n "$pid" ] || continue
        for p in "$pid" $(descendants "$pid"); do
            t="$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }')"
            total=$((total + ${t:-0}))
        done
    done
    echo "$total"
}
# rss_kib PID: VmRSS of PID and its descendants (nginx: master and worker).
rss_kib() {
    local total=0 p r
    for p in "$1" $(descendants "$1"); do
        r="$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"
        total=$((total + ${r:-0}))
    done
    echo "$total"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# --- the site, its CA, the origin -------------------------------------------------
site="$tmp/site"
mkdir -p "$site/static" "$tmp/ca"
python3 - "$site" <<'EOF'
import json, os, random, sys
site = sys.argv[1]
rng = random.Random(12)
words = "boundary morning river walk letter garden quiet light coffee friend".split()
items = "\n".join(
    f'<article><h2>{" ".join(rng.choices(words, k=4))}</h2><p>{" ".join(rng.choices(words, k=40))}</p></article>'
    for _ in range(24)
)
page = f"<!doctype html>\n<html><head><meta charset=utf-8><title>explore</title></head><body>\n{items}\n</body></html>\n"
open(os.path.join(site, "page.html"), "w").write(page[: 8 * 1024 - 20] + "\n</body></html>\n")
users = [
    {"pk": str(rng.randrange(10**9, 10**10)), "username": f"{rng.choice(words)}_{i}", "full_name": " ".join(rng.choices(words, k=2)),
     "is_private": False, "profile_pic_url": f"https://i.instagram.com/static/p{i}.jpg"}
    for i in range(18)
]
open(os.path.join(site, "timeline.json"), "w").write(json.dumps({"status": "ok", "items": users, "more_available": True}))
open(os.path.join(site, "static", "photo.jpg"), "wb").write(rng.randbytes(200 * 1024))
EOF
chmod -R a+rX "$site"

# The origin's throwaway CA and its leaf (ECDSA P-256 like ncd's leaves; the IP SAN
# is for mitmproxy, which is pointed at the address).
(
    cd "$tmp/ca"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=ncd bench origin CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out origin.key 2>/dev/null
    openssl req -new -key origin.key -subj "/CN=$site_host" -out origin.csr
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=$(printf 'DNS:%s,' $mint_hosts)IP:$origin_ip" >origin.ext
    openssl x509 -req -in origin.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
        -days 2 -sha256 -extfile origin.ext -out origin.pem 2>/dev/null
) || die "cannot make the origin's test CA"
origin_ca="$tmp/ca/ca.pem"

# start_origin CPU: nginx, one worker, on $origin_ip:443; sets origin_pid.
start_origin() {
    local dir="$tmp/nginx"
    rm -rf "$dir"
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
# Generated by bench/proxy/run.sh: one worker (one CPU), full TLS handshakes
# (no session cache, no tickets: the proxies resume nothing either), keep-alive
# connections never closed by a request count.
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    types { text/html html; application/json json; image/jpeg jpg; }
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    server {
        listen $origin_ip:443 ssl http2 backlog=4096;
        ssl_certificate $tmp/ca/origin.pem;
        ssl_certificate_key $tmp/ca/origin.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        root $site;
        location = /explore/ { try_files /page.html =404; }
        location = /api/v1/feed/timeline/ { try_files /timeline.json =404; }
        location /static/ { }
    }
}
EOF
    start nginx "$1" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    origin_pid="$started_pid"
    wait_port "$origin_ip" 443 "$origin_pid" nginx
}

# --- the proxies --------------------------------------------------------------------
# start_ncd: ncdd with the proxy on, one profile with 5 handles on Instagram; its
# upstream (dnsmasq, on the client CPU) answers the site's names with the origin's
# address and nothing else. Sets proxy_pid, proxy_port, proxy_ca.
start_ncd() {
    local dir="$tmp/ncdd" dns_port upstream_port
    rm -rf "$dir"
    mkdir -p "$dir/state"
    upstream_port="$(free_port)"
    start dnsmasq "$client_cpu" dnsmasq -k --conf-file=/dev/null --port="$upstream_port" \
        --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
        --address="/instagram.com/$origin_ip" --pid-file="$dir/dnsmasq.pid" --log-facility=-
    helper_pids+=("$started_pid")
    dns_port="$(free_port)"
    proxy_port="$(free_port)"
    cat >"$dir/ncd.toml" <<EOF
# Generated by bench/proxy/run.sh.
[dns]
listen = ["127.0.0.1:$dns_port"]
upstreams = ["udp://127.0.0.1:$upstream_port"]

[control]
socket = "$dir/control.sock"

[[profile]]
name = "bench"
instagram = ["@ex_name", "@exname.two", "@third_handle", "@the.fourth", "@fifth_one"]

[proxy]
listen = ["127.0.0.1:$proxy_port"]
origin_roots = ["$origin_ca"]
EOF
    # shellcheck disable=SC2086
    NO_COLOR=1 start ncdd "$server_cpu" $ncdd_wrap "$ncdd_bin" --config "$dir/ncd.toml" --state-dir "$dir/state" \
        --listen "127.0.0.1:$dns_port"
    proxy_pid="$started_pid"
    wait_port 127.0.0.1 "$proxy_port" "$proxy_pid" ncdd
    proxy_ca="$(find "$dir/state" -name ca.pem | head -n 1)"
    [ -n "$proxy_ca" ] || die "ncdd serves its proxy but wrote no ca.pem under $dir/state"
}

# start_mitmproxy: mitmdump in reverse mode to the origin, full TLS interception
# (its own CA mints a leaf per SNI; the origin's certificate is verified against the
# test CA), no addons, no flow output. Sets proxy_pid, proxy_port, proxy_ca.
start_mitmproxy() {
    local dir="$tmp/mitmproxy"
    rm -rf "$dir"
    mkdir -p "$dir"
    proxy_port="$(free_port)"
    start mitmproxy "$server_cpu" "$mitmdump_bin" -q --mode "reverse:https://$origin_ip:443" \
        --listen-host 127.0.0.1 --listen-port "$proxy_port" --set confdir="$dir" \
        --set ssl_verify_upstream_trusted_ca="$origin_ca"
    proxy_pid="$started_pid"
    wait_port 127.0.0.1 "$proxy_port" "$proxy_pid" mitmproxy
    proxy_ca="$dir/mitmproxy-ca-cert.pem"
    [ -f "$proxy_ca" ] || die "mitmproxy serves but wrote no $proxy_ca"
}

# --- checks -------------------------------------------------------------------------
declare -A resource_path=([html]=/explore/ [json]=/api/v1/feed/timeline/ [image]=/static/photo.jpg)
declare -A resource_file=([html]=page.html [json]=timeline.json [image]=static/photo.jpg)

# fetch CA ADDR:PORT HOST PATH [CURL ARGS]: the body, with the certificate checked
# against CA for HOST (the client sees what a browser trusting CA would).
fetch() {
    local ca="$1" target="$2" host="$3" path="$4"
    shift 4
    taskset -c "$client_cpu" curl -sS --fail-with-body --max-time 10 --cacert "$ca" \
        --connect-to "$host:443:$target" "$@" "https://$host$path"
}

# check_path PATH ADDR:PORT CA: every resource comes through whole, over HTTP/1.1 and
# HTTP/2; through ncd, the profile's page is the block page.
check_path() {
    local path="$1" target="$2" ca="$3" resource version want got
    for resource in $resources; do
        want="$(sha256sum <"$site/${resource_file[$resource]}" | cut -d' ' -f1)"
        for version in --http1.1 --http2; do
            got="$(fetch "$ca" "$target" "$site_host" "${resource_path[$resource]}" "$version" | sha256sum | cut -d' ' -f1)" ||
                die "$path: ${resource_path[$resource]} ($version) failed"
            [ "$got" = "$want" ] || die "$path: ${resource_path[$resource]} ($version) is not the origin's file"
        done
    done
    if [ "$path" = ncd ]; then
        got="$(fetch "$ca" "$target" "$site_host" /ex_name/ -H 'Accept: text/html' || true)"
        case "$got" in
            *ncd-boundary-block*) ;;
            *) die "ncd: /ex_name/ (a profile in the config) was not the block page: rules are not on" ;;
        esac
    fi
}

# --- measurements ---------------------------------------------------------------------
stamp="$(date +%Y%m%d-%H%M%S)"
raw="$bench/results/raw/proxy-$stamp"
mkdir -p "$raw"
results="$raw/results.tsv"
printf 'path\tprotocol\tresource\tkind\trep\trate\treq_s\tok_pct\tp50_ms\tp99_ms\tcpu_server_pct\tcpu_origin_pct\tcpu_h2load_pct\tcpu_us_per_req\n' >"$results"
facts="$raw/facts.tsv"
printf 'path\tmetric\trep\tvalue\n' >"$facts"
fact() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$facts"; }

declare -A protocol_args=(
    [h1]="--h1 -c 10 -m 1"
    [h2-10]="-c 1 -m 10"
    [h2-100]="-c 1 -m 100"
)
declare -A protocol_clients=([h1]=10 [h2-10]=1 [h2-100]=1)
for protocol in $protocols; do
    [ -n "${protocol_args[$protocol]:-}" ] || die "unknown protocol $protocol (h1 h2-10 h2-100)"
done
for resource in $resources; do
    [ -n "${resource_path[$resource]:-}" ] || die "unknown resource $resource (html json image)"
done

# run_h2load LABEL RATE ARGS...: one measured h2load run against $target (h2load on the
# client CPU; the server's, the origin's and h2load's CPU measured around it); prints
# req_s ok_pct p50_ms p99_ms cpu_server_pct cpu_origin_pct cpu_h2load_pct cpu_us_per_req.
# With RATE (requests/s in all), latencies come from h2load's per-request log.
run_h2load() {
    local label="$1" rate="$2"
    shift 2
    local args=(--connect-to "$target" -t 1 "$@")
    [ -z "$rate" ] || args+=(--log-file "$tmp/latency.log")
    rm -f "$tmp/latency.log"
    local server_before origin_before server_after origin_after TIMEFORMAT='%R %U %S'
    server_before="$(cpu_ticks "$server_pid")"
    origin_before="$(cpu_ticks "$measured_origin")"
    { time timeout --kill-after=5 $((duration + 60)) taskset -c "$client_cpu" h2load "${args[@]}" \
        >"$raw/$label.txt" 2>&1; } 2>"$tmp/time" || true
    server_after="$(cpu_ticks "$server_pid")"
    origin_after="$(cpu_ticks "$measured_origin")"
    kill -0 "$server_pid" 2>/dev/null || die "$label: the server exited"
    awk -v s=$((server_after - server_before)) -v o=$((origin_after - origin_before)) -v hz="$clk_tck" '{
          printf "CPU (%% of one core): server %.1f origin %.1f h2load %.1f\n", 100 * s / hz / $1, 100 * o / hz / $1, 100 * ($2 + $3) / $1
        }' "$tmp/time" >>"$raw/$label.txt"
    if [ -f "$tmp/latency.log" ]; then
        awk '{ print $3 }' "$tmp/latency.log" | sort -n | awk '{ v[NR] = $1 }
            END {
              if (NR == 0) { print "Latency from --log-file: no requests"; exit }
              i50 = int(0.50 * NR + 0.999999); i99 = int(0.99 * NR + 0.999999)
              printf "Latency from --log-file (ms): requests %d p50 %.3f p99 %.3f\n", NR, v[i50] / 1000, v[i99] / 1000
            }' >>"$raw/$label.txt"
    fi
    python3 - "$raw/$label.txt" "$server_after" "$server_before" "$clk_tck" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
ticks = int(sys.argv[2]) - int(sys.argv[3])
hz = int(sys.argv[4])
def grab(pattern, default="nan"):
    m = re.search(pattern, text)
    return m.group(1) if m else default
m = re.search(r"finished in ([\d.]+)(s|ms|us),", text)
seconds = float(m.group(1)) * {"s": 1, "ms": 1e-3, "us": 1e-6}[m.group(2)] if m else 0.0
succeeded = float(grab(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", "0"))
done = float(grab(r"requests: \d+ total, \d+ started, (\d+) done", "0"))
ok2xx = float(grab(r"status codes: (\d+) 2xx", "0"))
total = float(grab(r"requests: (\d+) total", "0"))
# With -D, h2load's status-code counts can include answers to requests it did not
# count in "total"; a request counts when it both succeeded and was a 2xx.
ok = min(ok2xx, succeeded)
req_s = ok / seconds if seconds else 0.0
ok_pct = 100 * ok / total if total else 0.0
m = re.search(r"Latency from --log-file \(ms\): requests \d+ p50 ([\d.]+) p99 ([\d.]+)", text)
p50, p99 = m.groups() if m else ("nan", "nan")
m = re.search(r"CPU \(% of one core\): server ([\d.]+) origin ([\d.]+) h2load ([\d.]+)", text)
cpu = m.groups() if m else ("nan",) * 3
per_req = 1e6 * ticks / hz / ok if ok else float("nan")
print(f"{req_s:.1f}\t{ok_pct:.2f}\t{p50}\t{p99}\t{cpu[0]}\t{cpu[1]}\t{cpu[2]}\t{per_req:.1f}")
EOF
}

# h2load_seconds FILE: h2load's "finished in 256.80ms," or "… 8.00s," in seconds.
h2load_seconds() {
    awk '/^finished in/ { t = $3; sub(/,$/, "", t)
           if (t ~ /ms$/) { sub(/ms$/, "", t); print t / 1000 } else if (t ~ /us$/) { sub(/us$/, "", t); print t / 1e6 }
           else { sub(/s$/, "", t); print t + 0 } }' "$1"
}

# keepalive PATH REP: every protocol × resource: warm-up, peak, then a fixed rate of
# half of direct's peak (of this repeat), or half of this path's own peak when that
# is lower (mitmproxy: it cannot carry direct's half).
declare -A direct_peak=()
keepalive() {
    local path="$1" rep="$2" protocol resource uri line peak rate per_client
    for protocol in $protocols; do
        for resource in $resources; do
            uri="https://$site_host${resource_path[$resource]}"
            # shellcheck disable=SC2086
            timeout --kill-after=5 $((warmup + 60)) taskset -c "$client_cpu" h2load --connect-to "$target" -t 1 \
                ${protocol_args[$protocol]} -D "$warmup" "$uri" >/dev/null 2>&1 || true
            # shellcheck disable=SC2086
            line="$(run_h2load "$path-$protocol-$resource-r$rep-peak" "" ${protocol_args[$protocol]} -D "$duration" "$uri")"
            printf '%s\t%s\t%s\tpeak\t%s\t\t%s\n' "$path" "$protocol" "$resource" "$rep" "$line" >>"$results"
            peak="${line%%$'\t'*}"
            log "  $path $protocol $resource: $(printf '%.0f' "$peak") req/s; ok $(echo "$line" | cut -f2) %; CPU server/origin/h2load $(echo "$line" | cut -f5-7 | tr '\t' /) %; $(echo "$line" | cut -f8) µs server CPU per request"
            [ "$path" != direct ] || direct_peak[$protocol-$resource]="$peak"
            rate="$(awk -v d="${direct_peak[$protocol-$resource]:-$peak}" -v p="$peak" \
                'BEGIN { r = d / 2; if (p / 2 < r) r = p / 2; printf "%d", r }')"
            [ "$rate" -gt 0 ] || continue
            per_client="$(awk -v r="$rate" -v c="${protocol_clients[$protocol]}" 'BEGIN { x = int(r / c); print (x < 1 ? 1 : x) }')"
            rate=$((per_client * ${protocol_clients[$protocol]}))
            # shellcheck disable=SC2086
            line="$(run_h2load "$path-$protocol-$resource-r$rep-half" "$rate" ${protocol_args[$protocol]} \
                --rps "$per_client" -D "$duration" "$uri")"
            printf '%s\t%s\t%s\thalf\t%s\t%s\t%s\n' "$path" "$protocol" "$resource" "$rep" "$rate" "$line" >>"$results"
            log "  $path $protocol $resource at $rate req/s: p50 $(echo "$line" | cut -f3) ms, p99 $(echo "$line" | cut -f4) ms"
        done
    done
}

# first_connections PATH REP CA: before any other traffic, one connection to each of
# the site's hosts (ncd and mitmproxy mint a leaf for each), then a second one (a
# cached leaf); the TLS handshake time as curl sees it (connect + handshake).
first_connections() {
    local path="$1" rep="$2" ca="$3" host kind t
    for kind in first cached; do
        for host in $mint_hosts; do
            t="$(taskset -c "$client_cpu" curl -sS -o /dev/null --max-time 10 --cacert "$ca" \
                --connect-to "$host:443:$target" -w '%{time_appconnect}' "https://$host${resource_path[json]}")" ||
                die "$path: the $kind connection to $host failed"
            fact "$path" "handshake_${kind}_ms" "$rep" "$(awk -v s="$t" 'BEGIN { printf "%.2f", s * 1000 }')"
        done
    done
}

# new_connections PATH REP: batches of --conn-batch connections at once, each a full
# TLS handshake and one request (JSON), for --duration seconds; the rate is the
# requests over h2load's own time (process start-up left out).
new_connections() {
    local path="$1" rep="$2" uri="https://$site_host${resource_path[json]}" start done_total=0 seconds=0 n s
    local server_before origin_before
    server_before="$(cpu_ticks "$server_pid")"
    origin_before="$(cpu_ticks "$measured_origin")"
    start="$(date +%s.%N)"
    while awk -v s="$start" -v now="$(date +%s.%N)" -v d="$duration" 'BEGIN { exit !(now - s < d) }'; do
        timeout --kill-after=5 60 taskset -c "$client_cpu" h2load --connect-to "$target" -t 1 \
            -n "$conn_batch" -c "$conn_batch" "$uri" >"$tmp/conn.txt" 2>&1 || true
        n="$(awk '/^status codes:/ { print $3 }' "$tmp/conn.txt")"
        s="$(h2load_seconds "$tmp/conn.txt")"
        [ -n "$n" ] && [ -n "$s" ] || { cat "$tmp/conn.txt" >&2; die "$path: a new-connection batch failed"; }
        done_total=$((done_total + n))
        seconds="$(awk -v a="$seconds" -v b="$s" 'BEGIN { print a + b }')"
    done
    cp "$tmp/conn.txt" "$raw/$path-conn-r$rep-last-batch.txt"
    local ticks=$(($(cpu_ticks "$server_pid") - server_before))
    local origin_ticks=$(($(cpu_ticks "$measured_origin") - origin_before))
    local rate per
    rate="$(awk -v n="$done_total" -v s="$seconds" 'BEGIN { printf "%.1f", (s > 0 ? n / s : 0) }')"
    per="$(awk -v t="$ticks" -v hz="$clk_tck" -v n="$done_total" 'BEGIN { printf "%.1f", (n > 0 ? 1e6 * t / hz / n : 0) }')"
    fact "$path" conn_rate "$rep" "$rate"
    fact "$path" conn_cpu_us "$rep" "$per"
    fact "$path" conn_origin_cpu_us "$rep" "$(awk -v t="$origin_ticks" -v hz="$clk_tck" -v n="$done_total" \
        'BEGIN { printf "%.1f", (n > 0 ? 1e6 * t / hz / n : 0) }')"
    log "  $path new connections: $rate/s (handshake + one request, $conn_batch at once); $per µs server CPU each"
}

# idle_rss PATH REP WHEN: RSS of the server with --idle keep-alive TLS connections
# open; WHEN is "fresh" (before the load runs) or "loaded" (after them: what the
# allocator kept from the load is counted too).
idle_rss() {
    local path="$1" rep="$2" when="$3" host="${target%:*}" port="${target##*:}" i open
    fact "$path" "rss_before_idle_${when}_mib" "$rep" "$(mib "$(rss_kib "$server_pid")")"
    rm -f "$tmp/idle.ready"
    start idle "$client_cpu" python3 "$here/idle.py" "$host" "$port" "$site_host" "${resource_path[json]}" \
        "$idle_connections" "$tmp/idle.ready" 300
    local idle_pid="$started_pid"
    for i in $(seq 1200); do
        [ -s "$tmp/idle.ready" ] && break
        kill -0 "$idle_pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -s "$tmp/idle.ready" ] || { cat "$tmp/idle.log" >&2; die "$path: idle.py did not open its connections"; }
    sleep 2
    open="$(cat "$tmp/idle.ready")"
    local rss
    rss="$(rss_kib "$server_pid")"
    fact "$path" "idle_open_${when}" "$rep" "$open"
    fact "$path" "rss_idle_${when}_mib" "$rep" "$(mib "$rss")"
    log "  $path ($when): RSS $(mib "$rss") MiB with $open idle TLS connections"
    [ "$open" -eq "$idle_connections" ] || log "  warning: only $open of $idle_connections connections opened: $(cat "$tmp/idle.log")"
    stop_pid "$idle_pid"
    # Until the server has seen every connection close.
    sleep 1
}

# --- machine and versions -----------------------------------------------------------
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc=$(nproc)"
    echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "kernel=$(uname -sr)"
    echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')"
    echo "h2load=$(h2load --version | awk '{ print $2 }')"
    echo "openssl=$(openssl version | awk '{ print $2 }')"
    case " $paths " in *" mitmproxy "*)
        echo "mitmproxy=$("$mitmdump_bin" --version 2>/dev/null | awk '/^Mitmproxy:/ { print $2 }') (Python $("$mitmdump_bin" --version 2>/dev/null | awk '/^Python:/ { print $2 }'))" ;;
    esac
    case " $paths " in *" ncd "*)
        echo "ncdd=$("$ncdd_bin" --version 2>/dev/null | awk '{print $2}') (binary built $(date -u -r "$ncdd_bin" '+%Y-%m-%d %H:%M UTC'); tree at $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet HEAD -- proxy daemon config policy 2>/dev/null || echo ', with uncommitted changes'))" ;;
    esac
    echo "settings=paths: $paths; h2load -D $duration after ${warmup}s warm-up; $repeats repeat(s); new connections $conn_batch at once; $idle_connections idle connections; server on CPU $server_cpu, h2load (and the origin behind a proxy) on CPU $client_cpu"
} >"$raw/machine.env"

set -- $protocols
n_rows=$#
set -- $resources
n_rows=$((n_rows * $#))
set -- $paths
log "about $(((repeats * $# * (n_rows * (warmup + 2 * duration + 2) + duration + 30) + 59) / 60)) min"

# start_path PATH: the origin and the path's server; sets server_pid, target, ca,
# measured_origin (the origin's pid behind a proxy) and helper_pids.
start_path() {
    helper_pids=()
    if [ "$1" = direct ]; then
        # The origin is the server under test.
        start_origin "$server_cpu"
        server_pid="$origin_pid"
        measured_origin=""
        target="$origin_ip:443"
        ca="$origin_ca"
    else
        # The origin works beside h2load, like the DNS bench's upstream.
        start_origin "$client_cpu"
        helper_pids+=("$origin_pid")
        measured_origin="$origin_pid"
        "start_$1"
        server_pid="$proxy_pid"
        target="127.0.0.1:$proxy_port"
        ca="$proxy_ca"
    fi
}

stop_path() {
    local pid
    stop_pid "$server_pid"
    for pid in "${helper_pids[@]+"${helper_pids[@]}"}"; do stop_pid "$pid"; done
}

helper_pids=()
for rep in $(seq "$repeats"); do
    for path in $paths; do
        log "rep $rep: $path"
        start_path "$path"
        fact "$path" rss_start_mib "$rep" "$(mib "$(rss_kib "$server_pid")")"
        first_connections "$path" "$rep" "$ca"
        check_path "$path" "$target" "$ca"
        keepalive "$path" "$rep"
        new_connections "$path" "$rep"
        [ "$idle_connections" -eq 0 ] || idle_rss "$path" "$rep" loaded
        kill -0 "$server_pid" 2>/dev/null || die "$path died during the run"
        cp "$tmp/$path.log" "$raw/$path-r$rep.log" 2>/dev/null || true
        [ "$path" != ncd ] || cp "$tmp/ncdd.log" "$raw/ncd-r$rep.log" 2>/dev/null || true
        stop_path
        if [ "$idle_connections" -gt 0 ]; then
            # The idle connections on a server that has served nothing else (a
            # process of its own: what they leave in the allocator stays out of
            # the figures above).
            start_path "$path"
            idle_rss "$path" "$rep" fresh
            stop_path
        fi
    done
done

mkdir -p "$bench/results"
python3 "$here/report.py" "$raw" | tee "$bench/results/proxy-latest.md"
log "raw h2load outputs: $raw"
