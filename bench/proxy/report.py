#!/usr/bin/env python3
"""Turn a proxy run's raw results into the Markdown report (stdout).

Usage: bench/proxy/report.py bench/results/raw/proxy-STAMP [MORE_STAMPS...]

Reads results.tsv (one row per h2load run), facts.tsv (connections, RSS) and
machine.env, all written by bench/proxy/run.sh. Cells are the median over the
repeats with the range (min–max) in brackets, as in the DNS report (the helpers are
bench/report.py's); ratios divide ncd's median by direct's. The last section
checks the targets of issue 12.
"""
import csv
import math
import os
import sys
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from report import cell, fmt, number, ratio  # noqa: E402  (bench/report.py)

PATHS = ("direct", "ncd", "mitmproxy")
PROTOCOLS = {
    "h1": "HTTP/1.1 keep-alive, 10 connections",
    "h2-10": "HTTP/2, 10 streams on 1 connection",
    "h2-100": "HTTP/2, 100 streams on 1 connection",
}
RESOURCES = {"html": "8 KiB page", "json": "4 KiB JSON", "image": "200 KiB image"}


def separator(header):
    """The Markdown rule under a header row written without its closing bar."""
    return "|" + "---|" * header.count("|")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    machines = []
    runs = defaultdict(list)  # (path, protocol, resource, kind) -> [row]
    facts = defaultdict(list)  # (path, metric) -> [value]
    for raw in sys.argv[1:]:
        machine = {}
        with open(os.path.join(raw, "machine.env")) as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition("=")
                machine[key] = value
        machines.append(machine)
        with open(os.path.join(raw, "results.tsv")) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                runs[(row["path"], row["protocol"], row["resource"], row["kind"])].append(row)
        with open(os.path.join(raw, "facts.tsv")) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                facts[(row["path"], row["metric"])].append(number(row["value"]))

    paths = [p for p in PATHS if any(k[0] == p for k in runs) or any(k[0] == p for k in facts)]
    rows = [
        (proto, res)
        for proto in PROTOCOLS
        for res in RESOURCES
        if any(k[1] == proto and k[2] == res for k in runs)
    ]

    def values(path, proto, res, kind, column):
        return [number(r[column]) for r in runs.get((path, proto, res, kind), [])]

    out = ["# ncd benchmark: the companion proxy beside direct and mitmproxy\n"]
    for machine in machines:
        out.append(f"- date: {machine.get('date')}; load average at start: {machine.get('load')}")
        out.append(f"- machine: {machine.get('nproc')} CPUs, {machine.get('cpu')}, {machine.get('kernel')}")
        versions = [f"nginx {machine.get('nginx')} (origin)", f"h2load {machine.get('h2load')}", f"OpenSSL {machine.get('openssl')}"]
        if machine.get("ncdd"):
            versions.insert(0, f"ncdd {machine.get('ncdd')}")
        if machine.get("mitmproxy"):
            versions.append(f"mitmproxy {machine.get('mitmproxy')}")
        out.append("- versions: " + ", ".join(versions))
        out.append(f"- settings: {machine.get('settings')}")
        load = number((machine.get("load") or "nan").split()[0])
        if load > 0.5:
            out.append(
                f"- **busy machine**: load average {load:.2f} at the start, so other jobs shared the "
                "cores; take requests/s and latency as a smoke test, and compare CPU per request"
            )
    out.append(
        "- cells: median (min–max) over the repeats; ratios: ncd's median over direct's "
        "(requests/s: higher is better; CPU, latency, memory: lower is better)\n"
    )

    def table(title, header_note, per_path, digits, ratio_title=None):
        out.append(f"## {title}\n")
        if header_note:
            out.append(header_note + "\n")
        header = "| row | " + " | ".join(paths)
        with_ratio = ratio_title and "ncd" in paths and "direct" in paths
        if with_ratio:
            header += f" | {ratio_title}"
        out.append(header + " |")
        out.append(separator(header))
        for proto, res in rows:
            cells, medians = [], {}
            for p in paths:
                text, medians[p] = cell(per_path(p, proto, res), digits)
                cells.append(text)
            line = f"| {PROTOCOLS[proto]}, {RESOURCES[res]} | " + " | ".join(cells)
            if with_ratio:
                line += f" | {ratio(medians['ncd'], medians['direct'])}"
            out.append(line + " |")
        out.append("")

    table(
        "Keep-alive: requests/s at peak",
        "h2load on one core as fast as it can; the server under test on the other.",
        lambda p, proto, res: values(p, proto, res, "peak", "req_s"),
        0,
        "ncd/direct (target ≥ 0.50)",
    )
    table(
        "Keep-alive: server CPU per request at peak (µs)",
        "CPU time of the server under test (nginx for direct, ncdd, mitmproxy; the origin "
        "behind a proxy not counted) over the requests answered. It moves much less than "
        "requests/s when other jobs share the machine.",
        lambda p, proto, res: values(p, proto, res, "peak", "cpu_us_per_req"),
        1,
        "ncd/direct (target ≤ 2.00)",
    )

    out.append("## Keep-alive: who was busy at peak (% of one core: server / origin / h2load)\n")
    out.append("The origin behind a proxy and h2load share the client core. A server well below 100 % "
               "while h2load (or h2load + origin) is near it means the generator was the limit.\n")
    out.append("| row | " + " | ".join(paths) + " |")
    out.append("|" + "---|" * (len(paths) + 1))
    for proto, res in rows:
        cells = []
        for p in paths:
            parts = [
                cell(values(p, proto, res, "peak", column), 0)[0]
                for column in ("cpu_server_pct", "cpu_origin_pct", "cpu_h2load_pct")
            ]
            if p == "direct":
                parts[1] = "–"
            cells.append(" / ".join(parts))
        out.append(f"| {PROTOCOLS[proto]}, {RESOURCES[res]} | " + " | ".join(cells) + " |")
    out.append("")

    out.append("## Keep-alive: latency at a fixed rate (half of direct's peak)\n")
    out.append("Each path at half of direct's peak requests/s in the same repeat, or at half of its own "
               "peak when that is lower (marked *own*). p50 / p99 in ms, from h2load's per-request log.\n")
    header = "| row | " + " | ".join(f"{p}: req/s, p50 / p99" for p in paths)
    if "ncd" in paths and "direct" in paths:
        header += " | ncd p50 − direct p50 (target ≤ 1 ms)"
    out.append(header + " |")
    out.append(separator(header))
    added_p50 = {}
    for proto, res in rows:
        cells, p50s, ncd_own = [], {}, False
        for p in paths:
            rate_cell, rate = cell(values(p, proto, res, "half", "rate"), 0)
            p50_cell, p50s[p] = cell(values(p, proto, res, "half", "p50_ms"), 2)
            p99_cell, _ = cell(values(p, proto, res, "half", "p99_ms"), 2)
            direct_rate = cell(values("direct", proto, res, "half", "rate"), 0)[1]
            own = " *own*" if p != "direct" and not math.isnan(direct_rate) and rate < 0.9 * direct_rate else ""
            cells.append(f"{rate_cell}{own}: {p50_cell} / {p99_cell}")
            if p == "ncd":
                ncd_own = bool(own)
        line = f"| {PROTOCOLS[proto]}, {RESOURCES[res]} | " + " | ".join(cells)
        if "ncd" in paths and "direct" in paths:
            added = p50s["ncd"] - p50s["direct"]
            # At its own (lower) rate ncd was past half of its peak: not the same load.
            if ncd_own:
                line += f" | ({fmt(added, 2)}: not at direct's rate)"
            else:
                added_p50[(proto, res)] = added
                line += f" | {fmt(added, 2)}"
        out.append(line + " |")
    out.append("")

    def fact_row(title, metric, digits, ratio_note=None):
        cells, medians = [], {}
        for p in paths:
            text, medians[p] = cell(facts.get((p, metric), []), digits)
            cells.append(text)
        line = f"| {title} | " + " | ".join(cells)
        if "ncd" in paths and "direct" in paths:
            line += f" | {ratio(medians['ncd'], medians['direct']) if ratio_note else ''}"
        out.append(line + " |")
        return medians

    out.append("## New TLS connections, memory\n")
    header = "| metric | " + " | ".join(paths)
    if "ncd" in paths and "direct" in paths:
        header += " | ncd/direct"
    out.append(header + " |")
    out.append(separator(header))
    conn = fact_row("new connections/s (full handshake + one request, cached leaf)", "conn_rate", 0, True)
    fact_row("server CPU per new connection (µs)", "conn_cpu_us", 0, True)
    fact_row("first connection to a host: connect + handshake (ms), leaf minted", "handshake_first_ms", 2, True)
    fact_row("next connection to that host: connect + handshake (ms), cached leaf", "handshake_cached_ms", 2, True)
    fact_row("RSS at start (MiB)", "rss_start_mib", 1, True)
    fact_row("fresh server: RSS before the idle connections (MiB)", "rss_before_idle_fresh_mib", 1, True)
    fact_row("fresh server: RSS with the idle keep-alive TLS connections open (MiB)", "rss_idle_fresh_mib", 1, True)
    fact_row("after the load runs: RSS before the idle connections (MiB)", "rss_before_idle_loaded_mib", 1, True)
    rss = fact_row(
        "**after the load runs: RSS with the idle keep-alive TLS connections open (MiB)**",
        "rss_idle_loaded_mib",
        1,
        True,
    )
    fact_row("idle connections open: fresh server", "idle_open_fresh", 0)
    fact_row("idle connections open: after the load runs", "idle_open_loaded", 0)
    out.append("")

    if "ncd" in paths and "direct" in paths:
        out.append("## Targets (issue 12)\n")
        out.append("| target | worst row | met |")
        out.append("|---|---|---|")

        def worst(column, kind, pick):
            found = []
            for proto, res in rows:
                n = cell(values("ncd", proto, res, kind, column), 3)[1]
                d = cell(values("direct", proto, res, kind, column), 3)[1]
                if not (math.isnan(n) or math.isnan(d) or d == 0):
                    found.append((n / d, f"{PROTOCOLS[proto]}, {RESOURCES[res]}"))
            return pick(found) if found else (math.nan, "–")

        def verdict(ok):
            return "–" if ok is None else ("yes" if ok else "**no**")

        r, where = worst("req_s", "peak", min)
        out.append(f"| every keep-alive row ≥ 0.50 × direct's req/s | {fmt(r, 2)}× ({where}) | "
                   f"{verdict(None if math.isnan(r) else r >= 0.5)} |")
        r, where = worst("cpu_us_per_req", "peak", max)
        out.append(f"| every keep-alive row ≤ 2 × direct's CPU per request | {fmt(r, 2)}× ({where}) | "
                   f"{verdict(None if math.isnan(r) else r <= 2.0)} |")
        if added_p50:
            (proto, res), a = max(added_p50.items(), key=lambda kv: (-math.inf if math.isnan(kv[1]) else kv[1]))
            out.append(f"| ≤ 1 ms added p50 at half of direct's load (rows where ncd ran at that rate) | {fmt(a, 2)} ms ({PROTOCOLS[proto]}, {RESOURCES[res]}) | "
                       f"{verdict(None if math.isnan(a) else a <= 1.0)} |")
        c = conn["ncd"] / conn["direct"] if conn.get("direct") else math.nan
        out.append(f"| new connections (cached leaf) ≥ 0.50 × direct's rate | {fmt(c, 2)}× | "
                   f"{verdict(None if math.isnan(c) else c >= 0.5)} |")
        m = rss.get("ncd", math.nan)
        out.append(f"| ≤ 40 MiB RSS with the idle connections (after the load runs) | {fmt(m, 1)} MiB | "
                   f"{verdict(None if math.isnan(m) else m <= 40)} |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
