#!/usr/bin/env python3
"""Writes Linker/haul.order: the functions of the `haul` binary that typical runs execute.

The release link places these functions first (lld's --symbol-ordering-file, see Package.swift), so
the code a download runs shares a few pages instead of being spread over the 20 MB of machine code
that the Swift runtime, Foundation and the libraries bring. The kernel maps code in windows around
every page that runs, so spread-out code costs resident memory out of proportion to its size.

Each run is one `haul` command under valgrind's callgrind against nginx on loopback (HTTP and
HTTPS): a segmented download, a batch, a download with progress output, a checksum, the help. The
executed functions of the binary itself are listed, one mangled name a line, sorted, so a new list
shows as a small diff. Names that are gone later are ignored by the linker, and functions missing
from the list still work: they only cost memory. Run it again (`make symbol-order`) after larger
changes to the code a download runs.

Usage: symbol_order.py --haul PATH [--work DIR] [--out Linker/haul.order]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_nginx import Nginx  # noqa: E402

MiB = 1 << 20
FUNCTION = re.compile(r"^(c?fn|c?ob)=\((\d+)\)(?: (.*))?$")


def executed(profile, binary):
    """The functions of `binary` that callgrind saw run, from its (name-compressed) output."""
    objects, functions, names = {}, {}, set()
    current_object = None
    with open(profile, errors="replace") as handle:
        for line in handle:
            match = FUNCTION.match(line.rstrip("\n"))
            if not match:
                continue
            kind, key, name = match.groups()
            table = objects if kind.endswith("ob") else functions
            if name:
                table[key] = name
            if kind == "ob":
                current_object = objects.get(key)
            elif kind == "fn" and current_object == binary:
                # callgrind marks recursion depth as name'2, name'3, ...
                names.add(re.sub(r"'\d+$", "", functions.get(key, "")))
    # Code without a symbol shows as its address: nothing the linker could place.
    return {name for name in names if name and not name.startswith("0x")}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--haul", required=True, help="the release haul binary (not stripped)")
    parser.add_argument("--work", default=None, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--out", default="Linker/haul.order")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="haul-order-")
    os.chmod(work, 0o755)  # nginx's workers read the served files as another user
    for folder in ("www", "tmp", "out", "profiles"):
        os.makedirs(f"{work}/{folder}", exist_ok=True)
    # valgrind reads symbols but not this toolchain's debug information: profile a copy without it.
    binary = f"{work}/haul"
    subprocess.run(["strip", "--strip-debug", "-o", binary, args.haul], check=True)
    with open(f"{work}/www/file.bin", "wb") as handle:
        handle.write(os.urandom(16 * MiB))
    for index in range(8):
        with open(f"{work}/www/small{index}.bin", "wb") as handle:
            handle.write(os.urandom(MiB // 2))
    digest = subprocess.run(["sha256sum", f"{work}/www/file.bin"], capture_output=True, text=True,
                            check=True).stdout.split()[0]
    names = set()
    with Nginx(work) as server:
        listing = f"{work}/list.txt"
        with open(listing, "w") as handle:
            handle.writelines(server.url("http", "fast", f"small{index}.bin") + "\n" for index in range(8))
        # Run in {work}/out: most names are relative, as people type them; one is absolute.
        runs = {
            "http": ["get", "-q", server.url("http", "fast", "file.bin"), "-o", f"{work}/out/file.bin"],
            "https": ["get", "-q", "--cacert", server.cacert, server.url("https", "fast", "file.bin"), "-o", "file.bin"],
            "progress": ["get", server.url("http", "fast", "file.bin")],
            "checksum": ["get", "-q", "--checksum", f"sha-256={digest}", server.url("http", "fast", "file.bin"),
                         "-o", "file.bin"],
            "batch": ["get", "-q", "-i", listing, "-d", "batch", "-j", "4"],
            "help": ["get", "--help"],
        }
        for name, arguments in runs.items():
            shutil.rmtree(f"{work}/out", ignore_errors=True)
            os.makedirs(f"{work}/out")
            profile = f"{work}/profiles/{name}"
            result = subprocess.run(["valgrind", "--tool=callgrind", "--demangle=no",
                                     f"--callgrind-out-file={profile}", binary, *arguments],
                                    cwd=f"{work}/out", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if result.returncode != 0:
                sys.exit(f"symbol_order.py: the {name} run failed: {result.stderr[-500:]}")
            found = executed(profile, binary)
            print(f"{name}: {len(found)} functions", file=sys.stderr)
            names |= found
    with open(args.out, "w") as handle:
        handle.writelines(name + "\n" for name in sorted(names))
    print(f"wrote {len(names)} functions to {args.out}", file=sys.stderr)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
