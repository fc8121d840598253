#!/usr/bin/env python3
"""Write every file the benchmark reads, for one blocklist size.

Usage: bench/gen_data.py SIZE [OUTDIR]      SIZE: 10k, 100k, 1m or a plain number
       (default OUTDIR: bench/data/SIZE; the shared upstream zone goes to bench/data/zone)

The blocklist names come from gen_blocklist.py (same seed, same names, unchanged), so
every server blocks exactly the same set. Written, all deterministic:

  data/SIZE/list.hosts            ncdd's list (`0.0.0.0 name`), read through a [block] lists entry
  data/SIZE/unbound-block.conf    `local-zone: "name." always_null` (blocks subdomains too)
  data/SIZE/dnsmasq-block.conf    `address=/name/#` (0.0.0.0 and ::, subdomains too)
  data/SIZE/q-blocked.txt         dnsperf input: list names, exact                 (A)
  data/SIZE/q-subdomain.txt       dnsperf input: `www.` + list names                (A)
  data/SIZE/q-allowed.txt         dnsperf input: upstream names, each repeated      (A)
  data/SIZE/q-mix.txt             dnsperf input: 30 % blocked, 70 % allowed, mixed  (A)
  data/zone/allowed.bench.zone    the authoritative upstream's zone (nsd)
  data/zone/unbound-local.conf    the same records as unbound local-data (ceiling candidate)
  data/zone/dnsmasq.hosts         the same records as a hosts file (ceiling candidate)
"""
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ALLOWED_NAMES = 2000            # distinct names in the upstream zone
QUERY_LINES = 100_000           # lines per query file (dnsperf loops over a file)
ALLOWED_ZONE = "allowed.bench"  # "bench" is never a TLD of the generated list


def parse_size(text):
    text = text.strip().lower()
    for suffix, factor in (("k", 1_000), ("m", 1_000_000)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * factor)
    return int(text)


def allowed_address(i):
    # 198.18.0.0/15 is reserved for benchmarking (RFC 2544); only ever inside answers.
    return f"198.18.{i // 256}.{i % 256}"


def allowed_name(i):
    return f"host{i}.{ALLOWED_ZONE}"


def write(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w") as out:
        for line in lines:
            out.write(line)
            out.write("\n")
    os.replace(tmp, path)


def write_zone(zone_dir):
    os.makedirs(zone_dir, exist_ok=True)
    records = [(allowed_name(i), allowed_address(i)) for i in range(ALLOWED_NAMES)]
    zone = [
        f"$ORIGIN {ALLOWED_ZONE}.",
        "$TTL 3600",
        f"@ IN SOA ns.{ALLOWED_ZONE}. hostmaster.{ALLOWED_ZONE}. 1 3600 600 86400 3600",
        f"@ IN NS ns.{ALLOWED_ZONE}.",
        "ns IN A 127.0.0.1",
    ] + [f"{name}. IN A {address}" for name, address in records]
    write(os.path.join(zone_dir, f"{ALLOWED_ZONE}.zone"), zone)
    write(
        os.path.join(zone_dir, "unbound-local.conf"),
        [f'local-zone: "{ALLOWED_ZONE}." static']
        + [f'local-data: "{name}. 3600 IN A {address}"' for name, address in records],
    )
    write(os.path.join(zone_dir, "dnsmasq.hosts"), [f"{address} {name}" for name, address in records])


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    label = sys.argv[1].lower()
    count = parse_size(label)
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "data", label)
    os.makedirs(out_dir, exist_ok=True)
    write_zone(os.path.join(HERE, "data", "zone"))

    generator = os.path.join(HERE, "gen_blocklist.py")
    names = subprocess.run(
        [sys.executable, generator, str(count), "plain"], check=True, capture_output=True, text=True
    ).stdout.split()
    assert len(names) == count, (len(names), count)
    with open(os.path.join(out_dir, "list.hosts.tmp"), "w") as out:
        subprocess.run([sys.executable, generator, str(count), "hosts"], check=True, stdout=out)
    os.replace(os.path.join(out_dir, "list.hosts.tmp"), os.path.join(out_dir, "list.hosts"))
    write(os.path.join(out_dir, "unbound-block.conf"), (f'local-zone: "{n}." always_null' for n in names))
    write(os.path.join(out_dir, "dnsmasq-block.conf"), (f"address=/{n}/#" for n in names))

    rng = random.Random(20261129)
    sample = rng.sample(names, min(count, QUERY_LINES))
    while len(sample) < QUERY_LINES:  # small lists: repeat names to fill the file
        sample.append(rng.choice(names))
    rng.shuffle(sample)
    write(os.path.join(out_dir, "q-blocked.txt"), (f"{n} A" for n in sample))
    subdomains = [f"www.{n}" for n in sample]
    rng.shuffle(subdomains)
    write(os.path.join(out_dir, "q-subdomain.txt"), (f"{n} A" for n in subdomains))
    allowed = [allowed_name(i % ALLOWED_NAMES) for i in range(QUERY_LINES)]
    rng.shuffle(allowed)
    write(os.path.join(out_dir, "q-allowed.txt"), (f"{n} A" for n in allowed))
    blocked_part = QUERY_LINES * 3 // 10
    mix = sample[:blocked_part] + allowed[: QUERY_LINES - blocked_part]
    rng.shuffle(mix)
    write(os.path.join(out_dir, "q-mix.txt"), (f"{n} A" for n in mix))

    # What run.sh checks with dig before measuring: a listed name, one of its
    # subdomains, and an allowed name with the address the upstream holds for it.
    write(
        os.path.join(out_dir, "probe.env"),
        [
            f"PROBE_BLOCKED={names[-1]}",
            f"PROBE_SUBDOMAIN=www.{names[len(names) // 2]}",
            f"PROBE_ALLOWED={allowed_name(1)}",
            f"PROBE_ALLOWED_ADDR={allowed_address(1)}",
            f"RULES={count}",
        ],
    )
    print(f"{out_dir}: {count} rules, {QUERY_LINES} lines per query file")


if __name__ == "__main__":
    main()
