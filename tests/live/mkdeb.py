#!/usr/bin/env python3
"""tests/live/mkdeb.py: build the ncd .deb with dpkg-deb, from the same
[package.metadata.deb] table `cargo deb -p ncd` reads (cli/Cargo.toml), for machines
without cargo-deb. Usage: mkdeb.py REPO BIN_DIR OUT.deb

Assets named target/release/X are taken from BIN_DIR; other sources are relative to
cli/. Files under /etc are conffiles (as cargo-deb does); the maintainer scripts come
from the table's maintainer-scripts folder, with the #DEBHELPER# marker left as the
comment it is (cargo-deb fills it only when it generates systemd snippets, which this
package does not ask for).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib


def main() -> int:
    repo, bin_dir, out = sys.argv[1:4]
    cli = os.path.join(repo, "cli")
    with open(os.path.join(cli, "Cargo.toml"), "rb") as f:
        crate = tomllib.load(f)
    with open(os.path.join(repo, "Cargo.toml"), "rb") as f:
        workspace = tomllib.load(f)
    meta = crate["package"]["metadata"]["deb"]
    version = crate["package"]["version"]
    if isinstance(version, dict):  # version.workspace = true
        version = workspace["workspace"]["package"]["version"]
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()

    stage = tempfile.mkdtemp(prefix="ncd-deb-")
    os.chmod(stage, 0o755)
    try:
        conffiles = set(meta.get("conf-files", []))
        for source, dest, mode in meta["assets"]:
            if source.startswith("target/release/"):
                src = os.path.join(bin_dir, source.removeprefix("target/release/"))
            else:
                src = os.path.normpath(os.path.join(cli, source))
            target = dest + os.path.basename(src) if dest.endswith("/") else dest
            path = os.path.join(stage, target)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            shutil.copyfile(src, path)
            os.chmod(path, int(mode, 8))
            if target.startswith("etc/"):
                conffiles.add("/" + target)
        control_dir = os.path.join(stage, "DEBIAN")
        os.makedirs(control_dir)
        size_kib = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(stage)
                       for f in fs) // 1024
        description = crate["package"].get("description", "ncd")
        extended = meta.get("extended-description", "").strip().replace("\n", " ")
        depends = ", ".join(d for d in [meta.get("depends", ""), "libc6"] if d)
        with open(os.path.join(control_dir, "control"), "w") as f:
            f.write(f"Package: {meta.get('name', 'ncd')}\nVersion: {version}\n"
                    f"Architecture: {arch}\nMaintainer: {meta['maintainer']}\n"
                    f"Installed-Size: {size_kib}\nDepends: {depends}\n"
                    f"Section: {meta.get('section', 'net')}\n"
                    f"Priority: {meta.get('priority', 'optional')}\n"
                    f"Description: {description}\n {extended}\n")
        with open(os.path.join(control_dir, "conffiles"), "w") as f:
            f.write("".join(c + "\n" for c in sorted(conffiles)))
        scripts = os.path.normpath(os.path.join(cli, meta.get("maintainer-scripts", "../debian/")))
        for name in ("preinst", "postinst", "prerm", "postrm"):
            src = os.path.join(scripts, name)
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(control_dir, name))
                os.chmod(os.path.join(control_dir, name), 0o755)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Znone", "--build", stage, out],
                       check=True, stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
