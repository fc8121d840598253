#!/usr/bin/env python3
"""Generate a realistic synthetic blocklist: N unique domains across many TLDs.

Usage: bench/gen_blocklist.py N FORMAT > list.txt     (FORMAT: plain | hosts | adblock)

Deterministic (fixed seed), so every server in a benchmark reads the same names.
Labels are 2-3 per name with lengths like real tracker lists (~17 bytes a line).
"""
import random
import sys

TLDS = ["com"] * 40 + ["net"] * 12 + ["org"] * 8 + ["io", "co", "de", "ru", "uk", "info", "xyz",
        "top", "online", "site", "fr", "nl", "br", "jp", "in", "it", "pl", "es", "cn", "app"]
SYLLABLES = ["ad", "track", "pix", "cdn", "stat", "go", "log", "met", "ric", "an", "ly", "tic",
             "sync", "tag", "beacon", "img", "ser", "ve", "data", "cl", "ick", "pro", "mo", "media"]


def label(rng):
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) + str(rng.randint(0, 999))


def main():
    count = int(sys.argv[1])
    fmt = sys.argv[2] if len(sys.argv) > 2 else "plain"
    rng = random.Random(20261128)
    seen = set()
    out = sys.stdout
    if fmt == "adblock":
        out.write("[Adblock Plus 2.0]\n")
    while len(seen) < count:
        parts = [label(rng)]
        if rng.random() < 0.35:
            parts.insert(0, label(rng))
        name = ".".join(parts + [rng.choice(TLDS)])
        if name in seen:
            continue
        seen.add(name)
        if fmt == "hosts":
            out.write(f"0.0.0.0 {name}\n")
        elif fmt == "adblock":
            out.write(f"||{name}^\n")
        else:
            out.write(name + "\n")


if __name__ == "__main__":
    main()
