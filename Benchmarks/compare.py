#!/usr/bin/env python3
"""Side-by-side download comparison on loopback: Haul against curl, aria2c, axel and URLSession.

Starts nginx on 127.0.0.1 (HTTP, and HTTPS with a self-signed certificate) serving generated files,
runs every tool on every scenario in interleaved rounds (the tool order rotates each round), checks
the SHA-256 of every output, and writes a Markdown report of medians (the performance targets first) to
docs/benchmarks.md with its plot. Nothing leaves the machine.

Modules: bench_tools (scenarios, command lines), bench_nginx (server, certificate), bench_report
(Markdown, plot).
"""
import argparse
import datetime
import hashlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_nginx import Nginx  # noqa: E402
from bench_report import replot, throughputs, write_plot, write_report, plotted  # noqa: E402
from bench_tools import (MiB, SCENARIOS, SWEEP, batch_tools, file_size, runs_on,  # noqa: E402
                         scaled, supports_fixed, tools)

TIMEOUT = 600  # seconds one download may take before it counts as failed


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def write_random(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    with open(path, "wb") as handle:
        left = size
        while left:
            handle.write(os.urandom(min(MiB, left)))
            left -= min(MiB, left)


def prepare(work, scenarios):
    """Generates the served files (kept between runs when their size fits) and returns their digests."""
    for folder in ("www", "tmp", "out"):
        os.makedirs(f"{work}/{folder}", exist_ok=True)
    digests = {}
    for spec in scenarios.values():
        if spec.get("batch"):
            os.makedirs(f"{work}/www/batch", exist_ok=True)
            for index in range(spec["batch"]):
                name = f"batch/f{index:03}.bin"
                write_random(f"{work}/www/{name}", file_size(spec))
                digests[name] = sha256(f"{work}/www/{name}")
        elif spec["file"] not in digests:
            write_random(f"{work}/www/{spec['file']}", spec["size"])
            digests[spec["file"]] = sha256(f"{work}/www/{spec['file']}")
    return digests


def remove(out):
    if os.path.isdir(out):
        shutil.rmtree(out)
    elif os.path.exists(out):
        os.remove(out)


def run_once(argv, out):
    """Runs one download under /usr/bin/time: wall clock, CPU user+sys and peak RSS."""
    remove(out)
    if out.endswith("/"):
        os.makedirs(out)
    subprocess.run(["sync"], check=False)
    timing = out.rstrip("/") + ".time"
    started = time.monotonic()
    process = subprocess.Popen(["/usr/bin/time", "-f", "%U %S %M", "-o", timing] + argv,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the tool and its children, not only time(1)
        _, stderr = process.communicate()
        stderr = f"timed out after {TIMEOUT} s".encode()
    wall = time.monotonic() - started
    try:
        user, system, rss_kib = open(timing).read().split()[-3:]
        cpu, rss = float(user) + float(system), int(rss_kib) / 1024
    except (OSError, ValueError):
        cpu, rss = 0.0, 0.0
    return dict(ok=process.returncode == 0, wall=wall, cpu=cpu, rss=rss,
                stderr=stderr.decode(errors="replace")[-300:])


def machine_description():
    cpu = "unknown CPU"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = int(open("/proc/meminfo").readline().split()[1]) // (1024 * 1024)
    versions = []
    for command in (["curl", "--version"], ["aria2c", "--version"], ["axel", "--version"], ["nginx", "-v"],
                    ["openssl", "version"]):
        try:
            out = subprocess.run(command, capture_output=True, text=True)
            versions.append((out.stdout or out.stderr).splitlines()[0].strip())
        except OSError:
            pass
    return f"{os.cpu_count()} × {cpu}, {memory} GiB RAM, Linux {platform.release()}", versions


def measure(args, scenarios, catalogue, batches, names, digests):
    """Every tool on every scenario, args.rounds times, the order rotating each round."""
    results = {(key, name): [] for key in scenarios for name in names}
    failures = []
    work = args.work
    with Nginx(work) as server:
        listing = f"{work}/batch-urls.txt"
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            order = names[shift:] + names[:shift]
            for key, spec in scenarios.items():
                https = spec.get("scheme") == "https"
                cacert = server.cacert if https else None
                for name in order:
                    if not runs_on(name, spec):
                        continue
                    if spec.get("batch"):
                        if name not in batches:
                            continue
                        out = f"{work}/out/{key}/"
                        with open(listing, "w") as handle:
                            for index in range(spec["batch"]):
                                handle.write(server.url("http", "fast", f"batch/f{index:03}.bin") + "\n")
                        run = run_once(batches[name](listing, out), out)
                        run["sha_ok"] = run["ok"] and all(
                            os.path.exists(f"{out}/f{index:03}.bin")
                            and sha256(f"{out}/f{index:03}.bin") == digests[f"batch/f{index:03}.bin"]
                            for index in range(spec["batch"]))
                    elif name in catalogue:
                        out = f"{work}/out/{key}.out"
                        url = server.url(spec.get("scheme", "http"), spec["location"], spec["file"])
                        digest = digests[spec["file"]] if spec.get("checksum") else None
                        argv = catalogue[name](url, out, digest, cacert)
                        if argv is None:
                            continue
                        run = run_once(argv, out)
                        run["sha_ok"] = run["ok"] and os.path.exists(out) and sha256(out) == digests[spec["file"]]
                    else:
                        continue
                    if not run["sha_ok"]:
                        failures.append(f"{name} on {key} (round {round_index + 1}): exit ok={run['ok']}, "
                                        f"checksum ok={run['sha_ok']} {run['stderr'].strip()}")
                    results[(key, name)].append(run)
                    print(f"round {round_index + 1} {key:20} {name:20} {run['wall']:7.2f} s "
                          f"{spec['size'] / MiB / run['wall']:8.1f} MiB/s  cpu {run['cpu']:5.2f} s  "
                          f"rss {run['rss']:6.1f} MiB  sha {'ok' if run['sha_ok'] else 'MISMATCH'}", flush=True)
                    remove(out)
    return results, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--haul", default=".build/release/haul")
    parser.add_argument("--urlsession", default=".build/urlsession-download")
    parser.add_argument("--plot", default="docs/benchmarks.svg")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", default="/tmp/haul-compare")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, of: {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--output", default="docs/benchmarks.md")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw the plot from the medians already in --output (no benchmark runs)")
    parser.add_argument("--seam-rows", action="store_true",
                        help="add a row for haul without seam checks (--seam-overlap 0), to measure their cost")
    parser.add_argument("--fixed-sweep", action=argparse.BooleanOptionalAction, default=False,
                        help="also run `haul --fixed -x N` for N in " + ", ".join(map(str, SWEEP))
                             + " on every scenario but the batch, for the default against best fixed -x table")
    parser.add_argument("--sizes-scale", type=int, default=1, metavar="N",
                        help="divide every file size by N (smoke tests; the figures then mean nothing)")
    args = parser.parse_args()
    if args.replot:
        replot(args.output, args.plot)
        return 0
    unknown = [s for s in args.scenarios.split(",") if s and s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    scenarios = scaled({s: SCENARIOS[s] for s in args.scenarios.split(",") if s}, args.sizes_scale)
    haul = os.path.abspath(args.haul)
    urlsession = os.path.abspath(args.urlsession)
    args.work = os.path.abspath(args.work)
    sweep = SWEEP if args.fixed_sweep else ()
    notes = []
    if sweep and not supports_fixed(haul):
        print(f"{haul} has no `get --fixed`: the fixed -x sweep is skipped", file=sys.stderr)
        notes.append("The haul binary measured has no `--fixed`, so the fixed -x sweep did not run.")
        sweep = ()
    digests = prepare(args.work, scenarios)

    catalogue = tools(haul, urlsession, f"{args.work}/www", args.seam_rows, sweep)
    if not os.access(urlsession, os.X_OK):
        print(f"{urlsession} is missing (Benchmarks/compare.sh builds it): no URLSession rows", file=sys.stderr)
        notes.append("The URLSession program was not built, so it did not run.")
        del catalogue["URLSession"]
    batches = batch_tools(haul, f"{args.work}/www")
    names = list(catalogue)
    names += [n for n in batches if n not in catalogue]  # none today: every batch row has a catalogue row
    results, failures = measure(args, scenarios, catalogue, batches, names, digests)

    machine, versions = machine_description()
    header = [
        "# Benchmarks",
        "",
        f"Generated by `make compare` (Benchmarks/compare.py) on {datetime.date.today().isoformat()}: "
        f"{args.rounds} interleaved round{'s' if args.rounds != 1 else ''}, medians shown. Machine: {machine}.",
        "Peers: " + "; ".join(versions) + ".",
    ]
    if args.sizes_scale > 1:
        notes.append(f"Every file size was divided by {args.sizes_scale} (`--sizes-scale`): a smoke run, "
                     "whose figures say nothing about the targets.")
    header += [""] + notes if notes else []
    titles = {key: spec["title"] for key, spec in scenarios.items()}
    write_plot(args.plot, titles, [n for n in names if plotted(n)], throughputs(results, scenarios, names))
    write_report(args.output, header, results, scenarios, names, args.plot, failures)
    print(f"wrote {args.output} and {args.plot}")
    # A peer's failure is reported (it is a finding); only Haul's own failures fail the run.
    return 1 if any(f.startswith("haul") for f in failures) else 0


if __name__ == "__main__":
    sys.exit(main())
