#!/usr/bin/env python3
"""Turn one run's raw results into the Markdown report (stdout).

Usage: bench/report.py bench/results/raw/STAMP [MORE_STAMPS...]

Reads results.tsv (one row per dnsperf run), facts.tsv (load time, RSS) and
machine.env, all written by run.sh. Each cell is the median over the repeats with the
range (min–max) in brackets; the ratio columns divide ncdd's median by the other's.
"""
import csv
import math
import os
import statistics
import sys
from collections import defaultdict

QUERY_TITLES = {
    "blocked": "blocked (listed name)",
    "subdomain": "blocked (www. + listed name)",
    "allowed": "allowed, cached (2,000 names repeated)",
    "mix": "mix 30 % blocked / 70 % allowed",
}


def number(text):
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value


def fmt(value, digits):
    if value is None or math.isnan(value):
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def cell(values, digits):
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–", math.nan
    median = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return fmt(median, digits), median
    return f"{fmt(median, digits)} ({fmt(min(values), digits)}–{fmt(max(values), digits)})", median


def ratio(a, b):
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    # Several raw dirs (runs of different sizes) merge into one report; the header
    # shows each run's machine line.
    machines = []
    runs = defaultdict(list)  # (size, server, query, kind) -> [row]
    facts = defaultdict(list)  # (size, server, metric) -> [value]
    for raw in sys.argv[1:]:
        machine = {}
        with open(os.path.join(raw, "machine.env")) as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition("=")
                machine[key] = value
        machines.append(machine)
        with open(os.path.join(raw, "results.tsv")) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                runs[(row["size"], row["server"], row["query"], row["kind"])].append(row)
        with open(os.path.join(raw, "facts.tsv")) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                facts[(row["size"], row["server"], row["metric"])].append(number(row["value"]))

    def values(size, server, query, kind, column):
        return [number(r[column]) for r in runs.get((size, server, query, kind), [])]

    out = []
    out.append("# ncd benchmark: ncdd, unbound and dnsmasq side by side\n")
    for machine in machines:
        out.append(f"- date: {machine.get('date')}; load average at start: {machine.get('load')}")
        out.append(f"- machine: {machine.get('nproc')} CPUs, {machine.get('cpu')}, {machine.get('kernel')}")
        out.append(
            f"- versions: ncdd {machine.get('ncdd')}, unbound {machine.get('unbound')}, "
            f"dnsmasq {machine.get('dnsmasq')}, nsd {machine.get('nsd')} (upstream), dnsperf {machine.get('dnsperf')}"
        )
        out.append(f"- settings: {machine.get('settings')}")
        load = number((machine.get("load") or "nan").split()[0])
        if load > 0.5:
            out.append(
                f"- **busy machine**: load average {load:.2f} at the start, so other jobs shared the "
                "cores; take these figures as a smoke test, not a measurement"
            )
    out.append(
        "- cells: median (min–max) over the repeats; latencies in ms from dnsperf -v per-answer "
        "times; ratios are ncdd's median over the other's (QPS: higher is better; time, "
        "latency, memory: lower is better)\n"
    )

    # The ceiling.
    ceiling = math.nan
    ceiling_rows = []
    for (size, server, query, kind), rows in sorted(runs.items()):
        if size != "ceiling" or kind != "peak":
            continue
        qps_cell, qps = cell(values(size, server, query, "peak", "qps"), 0)
        p99_cell, _ = cell(values(size, server, query, "half", "p99_ms"), 3)
        cpu = f"{cell(values(size, server, query, 'peak', 'cpu_server_pct'), 0)[0]} / " + cell(
            values(size, server, query, "peak", "cpu_dnsperf_pct"), 0
        )[0]
        ceiling_rows.append((qps, server, qps_cell, p99_cell, cpu))
    if ceiling_rows:
        ceiling_rows.sort(reverse=True)
        ceiling = ceiling_rows[0][0]
        out.append("## Ceiling: trivial responders (answer from memory, no list, no upstream)\n")
        out.append("| responder | QPS | p99 at half load (ms) | CPU at peak, server / dnsperf (%) |")
        out.append("|---|---|---|---|")
        for _, server, qps_cell, p99_cell, cpu in ceiling_rows:
            out.append(f"| {server} | {qps_cell} | {p99_cell} | {cpu} |")
        out.append(f"\nCeiling used below: **{ceiling_rows[0][1]}**, {fmt(ceiling, 0)} q/s.\n")

    sizes = sorted({k[0] for k in runs if k[0] != "ceiling"} | {k[0] for k in facts}, key=size_order)
    for size in sizes:
        servers = [s for s in ("ncdd", "unbound", "dnsmasq") if any(k[0] == size and k[1] == s for k in facts)]
        queries = [q for q in QUERY_TITLES if any(k[0] == size and k[2] == q for k in runs)]
        out.append(f"## {size} rules\n")
        header = "| metric | " + " | ".join(servers)
        if "ncdd" in servers:
            header += "".join(f" | ncdd/{s}" for s in servers if s != "ncdd")
            if not math.isnan(ceiling):
                header += " | ncdd/ceiling"
        header += " |"
        out.append(header)
        out.append("|" + "---|" * (header.count("|") - 1))

        def row(title, per_server, with_ceiling=False, ratios=True):
            cells, medians = {}, {}
            for s in servers:
                cells[s], medians[s] = per_server(s)
            line = f"| {title} | " + " | ".join(cells[s] for s in servers)
            if "ncdd" in servers:
                line += "".join(
                    f" | {ratio(medians['ncdd'], medians[s]) if ratios else ''}" for s in servers if s != "ncdd"
                )
                if not math.isnan(ceiling):
                    line += f" | {ratio(medians['ncdd'], ceiling) if with_ceiling else ''}"
            out.append(line + " |")

        def cpu_per_answer(size, s, q):
            rows = runs.get((size, s, q, "peak"), [])
            return [
                number(r["cpu_server_pct"]) / 100 * 1e6 / number(r["qps"]) if number(r["qps"]) > 0 else math.nan
                for r in rows
            ]

        def cpu_cell(size, s, q):
            server_cpu = values(size, s, q, "peak", "cpu_server_pct")
            client_cpu = values(size, s, q, "peak", "cpu_dnsperf_pct")
            return f"{cell(server_cpu, 0)[0]} / {cell(client_cpu, 0)[0]}", math.nan

        row("list load time (s), start → first blocked answer", lambda s: cell(facts[(size, s, "load_s")], 2))
        row("RSS after load (MiB)", lambda s: cell(facts[(size, s, "rss_load_mib")], 1))
        row("RSS after all runs (MiB)", lambda s: cell(facts[(size, s, "rss_end_mib")], 1))
        for q in queries:
            title = QUERY_TITLES[q]
            row(f"**{title}**: QPS", lambda s: cell(values(size, s, q, "peak", "qps"), 0), with_ceiling=True)
            row(f"{q}: avg latency at peak (ms)", lambda s: cell(values(size, s, q, "peak", "avg_ms"), 3))
            row(f"{q}: p50 at peak (ms)", lambda s: cell(values(size, s, q, "peak", "p50_ms"), 3))
            row(f"{q}: p99 at peak (ms)", lambda s: cell(values(size, s, q, "peak", "p99_ms"), 3))
            if any(runs.get((size, s, q, "half")) for s in servers):
                row(f"{q}: p99 at half of peak QPS (ms)", lambda s: cell(values(size, s, q, "half", "p99_ms"), 3))
            row(
                f"{q}: lost + non-NOERROR at peak (%)",
                lambda s: cell(
                    [a + b for a, b in zip(values(size, s, q, "peak", "lost_pct"), values(size, s, q, "peak", "bad_rcode_pct"))],
                    3,
                ),
                ratios=False,
            )
            row(f"{q}: CPU at peak, server / dnsperf (% of a core)", lambda s: cpu_cell(size, s, q), ratios=False)
            row(f"{q}: server CPU per answer at peak (µs)", lambda s: cell(cpu_per_answer(size, s, q), 1))
        out.append("")
    print("\n".join(out))


def size_order(label):
    text = label.lower()
    for suffix, factor in (("k", 1_000), ("m", 1_000_000)):
        if text.endswith(suffix):
            try:
                return float(text[:-1]) * factor
            except ValueError:
                return math.inf
    try:
        return float(text)
    except ValueError:
        return math.inf


if __name__ == "__main__":
    main()
