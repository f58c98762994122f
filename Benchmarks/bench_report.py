"""compare.py's report: the Markdown tables (the performance targets, one table per scenario, default
against the best fixed -x) and the throughput plot (matplotlib)."""
import os
import statistics

from bench_tools import CURL_SYNCED, DISK_FLOOR, MiB, REFERENCE, SCALED_MARK, SCENARIOS, SWEEP, sweep_name

KEPT_MARKER = "<!-- Sections below are measured by other scripts and kept when this file is regenerated. -->"

METHOD = (
    "nginx serves files from the page cache on 127.0.0.1 (`sendfile on`), over HTTP and over TLS with a "
    "self-signed certificate made for the run (`ssl_session_cache shared:SSL:10m`, so connections can "
    "resume sessions). Every tool writes to the same disk, `sync` runs before each download, and every "
    "output's SHA-256 is checked against the source. `haul` is Haul's defaults: it measures how many "
    "connections help and opens at most 16 (`-x` is a ceiling); `haul --fixed -x N` opens exactly N. "
    "Haul's time includes its `fdatasync` before the final rename (the others do not sync; "
    f"`{CURL_SYNCED}` is curl made as durable, `{DISK_FLOOR}` the disk alone). "
    "Ratio = tool's median time / `haul`'s (above 1: `haul` is faster). curl runs only unthrottled: "
    "it uses one connection, so on a per-connection limit its speed is the limit itself "
    "(8 MiB/s; 1 MiB/s on a slow connection of the mixed case, over four minutes for 256 MiB). "
    "Haul computes the SHA-256 while it downloads by default (and reports it); `--no-hash` turns "
    "that off, `--sha256` adds the comparison. In the checksum scenario curl is `curl -o && sha256sum -c`, "
    "aria2c uses `--checksum=sha-256=…`, and axel (which has no checksum option) does not run. "
    "Over HTTPS Haul and curl get the certificate with `--cacert`, aria2c with `--ca-certificate`; axel "
    "has no CA option and runs with `-k` (no certificate check, which saves it nothing on the transfer "
    "itself); URLSession does not run, since Foundation on Linux cannot be told to trust another CA."
)

READING = [
    "## Reading the results",
    "",
    "- This machine has two cores and nginx, the kernel's loopback path and the downloader share them, "
    "so unthrottled loopback runs are CPU-bound, over TLS even more so (nginx encrypts, the client "
    "decrypts, on the same two cores). Haul's default computes the file's SHA-256 while it "
    "downloads (OpenSSL, with SHA-NI where the CPU has it): that is the gap between the CPU columns "
    "of `haul` and `haul --no-hash`. When a digest must be checked, that work pays off: "
    "Haul's checked download avoids reading the whole file again afterwards, as "
    "`curl && sha256sum` and `aria2c --checksum` do.",
    "- Connections cost kernel (and with TLS, handshake) time that one connection does not: on an "
    "unthrottled loopback curl's single stream is the fastest; segmenting wins where each connection "
    "is limited (the throttled and mixed scenarios), as on real servers and paths. The "
    "\"default against the best fixed -x\" table shows how close Haul's own choice comes to the best "
    "count for each scenario.",
    "- In the mixed scenario nginx decides each connection's speed by its number; a new connection "
    "is a new draw.",
    "- nginx's `limit_rate` over plain HTTP counts in whole seconds: a response often starts with "
    "a burst (up to a second's worth on a connection that already served a request), and the last "
    "bytes of one that outran its budget wait for nginx's next second. Over TLS it does not burst, "
    "and each connection gets the limit itself, so 16 connections need 2.0 s for 256 MiB whoever "
    "opens them. Haul takes the file in chunks that last about twenty times the shortest wait for a "
    "response's first byte (100 ms on loopback, up to 1 s on far servers) at one connection's "
    "measured speed: on loopback these are about 1 MiB, most of them served from the burst, and "
    "once every byte has its request, a response that stops short for 300 ms gets a twin. Peers "
    "that split the file once into 16 parts get the burst once per connection. Where nginx's "
    "seconds fall decides how much of each request is a burst, so every tool's rows in those "
    "scenarios vary from round to round (Haul's default: about 0.5-1.3 s for 256 MiB).",
    "- Haul's default measures: it starts on the probe's connection and, unless its transfer loop "
    "was already busy for 80% of the first window (then more connections on that one loop cannot "
    "move more bytes: the unthrottled and HTTPS runs here), tries the ceiling (16) for a short "
    "window and keeps it only if the throughput rose by more than 15%. A download that would end "
    "within 10 s keeps the count that helped rather than trying fewer.",
    "- In the batch, Haul syncs every finished file to disk before renaming it into place "
    "(`fdatasync`; `--no-sync` skips it) and keeps a resumable journal; curl and aria2c do neither.",
    "- Haul's default waits until the file is on the disk (`fdatasync`) before it renames it; the "
    "peers end once their bytes are in the page cache. Where the disk writes more slowly than "
    "loopback delivers, Haul's unthrottled and batch rows measure the disk: \"What the disk costs\" "
    f"puts them beside curl made as durable (`{CURL_SYNCED}`) and beside the disk alone "
    f"(`{DISK_FLOOR}`: the same bytes copied from the page cache, no network), and "
    "`haul --no-sync` shows the download without the wait.",
    "- The best fixed -x is the fastest of five medians, and the fastest of five noisy medians lies "
    "below the typical one even when the five counts are alike: where the default's runs and the "
    "best count's runs overlap (the \"runs\" columns), the table cannot tell them apart.",
    "- Timings to a real disk vary by ±20% from run to run with writeback (runs where the kernel "
    "throttles dirty pages show up to 50% more system CPU for the same download); compare ratios "
    "within one run, not seconds across runs.",
    "- Peak RSS counts every page of code a process maps, though the page cache shares it. Most of "
    "`haul`'s is code: libcurl with the libraries it loads, OpenSSL, the Swift runtime and Foundation; "
    "the heap, buffers and stacks of a 1 GiB download are about 4 MiB. The release link places the "
    "functions a download runs together (`Linker/haul.order`, `make symbol-order`), which keeps about "
    "4 MiB less of the binary resident than the linker's own order.",
    "- A failure of a peer (an exit status other than 0, or wrong bytes) is listed under Failures; it "
    "is a finding about that tool, and the run goes on.",
    "",
]


def median(runs, field):
    return statistics.median(r[field] for r in runs) if runs else None


def spread(runs):
    """The fastest and the slowest run's wall time."""
    walls = [r["wall"] for r in runs]
    return f"{min(walls):.2f}–{max(walls):.2f}"


def verdict(met):
    return "—" if met is None else ("met" if met else "**not met**")


def target_rows(results, scenarios):
    """The performance targets: (target, measured figure, met or None when not measured)."""
    def wall(key, name):
        return median(results.get((key, name), []), "wall")

    def cpu(key, name):
        return median(results.get((key, name), []), "cpu")

    def ratio_row(target, key, name, peer, limit, higher=False, field=wall, what="wall"):
        mine, theirs = field(key, name), field(key, peer)
        peer = peer.split()[0]  # "aria2c -x16 -s16" -> "aria2c"
        if mine is None or theirs is None or mine <= 0:
            return target, "not measured", None
        if higher:  # throughput ratio = peer's time / ours
            value = theirs / mine
            return target, f"{value:.2f} × {peer}'s ({mine:.2f} s against {theirs:.2f} s)", value >= limit
        value = mine / theirs
        return target, f"{value:.2f} × {peer}'s {what} ({mine:.2f} s against {theirs:.2f} s)", value <= limit

    rows = [
        ratio_row("1 GiB unthrottled: throughput ≥ 0.9 × curl's", "unthrottled-1g", REFERENCE, "curl", 0.9,
                  higher=True),
    ]
    throttled = wall("throttled-256m", REFERENCE)
    if throttled:
        rate = scenarios["throttled-256m"]["size"] / throttled / 1e6
        rows.append(("256 MiB at 8 MiB/s per connection: ≥ 128 MB/s", f"{rate:.1f} MB/s", rate >= 128))
    else:
        rows.append(("256 MiB at 8 MiB/s per connection: ≥ 128 MB/s", "not measured", None))
    rows += [
        ratio_row("256 MiB mixed: throughput ≥ 1.5 × aria2c's", "mixed-256m", REFERENCE, "aria2c -x16 -s16",
                  1.5, higher=True),
        ratio_row("Batch: wall ≤ 1.25 × curl's", "batch-200x1m", REFERENCE, "curl", 1.25),
        ratio_row("Batch with `--no-sync`: wall ≤ 1.0 × curl's", "batch-200x1m", "haul --no-sync", "curl", 1.0),
        ratio_row("HTTPS 1 GiB: wall ≤ 1.1 × curl's", "https-unthrottled-1g", REFERENCE, "curl", 1.1),
        ratio_row("HTTPS 1 GiB: wall ≤ 1.0 × aria2c's", "https-unthrottled-1g", REFERENCE,
                  "aria2c -x16 -s16", 1.0),
        ratio_row("HTTPS 256 MiB throttled: wall ≤ 0.95 × aria2c's", "https-throttled-256m", REFERENCE,
                  "aria2c -x16 -s16", 0.95),
        ratio_row("HTTPS 256 MiB throttled: CPU ≤ 1.0 × aria2c's", "https-throttled-256m", REFERENCE,
                  "aria2c -x16 -s16", 1.0, field=cpu, what="CPU"),
        # aria2c does not hash: Haul's own overhead is compared with the SHA-256 set aside too.
        ratio_row("HTTPS 256 MiB throttled: CPU hashing aside (`--no-hash`) ≤ 1.0 × aria2c's",
                  "https-throttled-256m", "haul --no-hash", "aria2c -x16 -s16", 1.0, field=cpu, what="CPU"),
    ]
    peaks = [(max(r["rss"] for r in runs), name, key) for (key, name), runs in results.items()
             if runs and name.startswith("haul") and SCENARIOS[key]["size"] == 1024 * MiB]
    defaults = [entry for entry in peaks if entry[1] == REFERENCE]
    if defaults:
        peak, _, key = max(defaults)
        rows.append(("Peak RSS ≤ 32 MiB for 1 GiB, defaults", f"{peak:.1f} MiB (highest: {key})", peak <= 32))
    else:
        rows.append(("Peak RSS ≤ 32 MiB for 1 GiB, defaults", "not measured", None))
    if peaks:
        peak, name, key = max(peaks)
        rows.append(("Peak RSS ≤ 32 MiB for 1 GiB, any setting measured", f"{peak:.1f} MiB (highest: `{name}`, {key})",
                     peak <= 32))
    else:
        rows.append(("Peak RSS ≤ 32 MiB for 1 GiB, any setting measured", "not measured", None))
    return rows


def targets_table(results, scenarios):
    lines = ["## The performance targets", "",
             "Medians of `haul` (defaults) against its peers in this run.", "",
             "| target | measured | |", "|---|---|---|"]
    for target, measured, met in target_rows(results, scenarios):
        lines.append(f"| {target} | {measured} | {verdict(met)} |")
    return lines + [""]


def disk_table(results, scenarios):
    """Where Haul's default waits for the disk: its time beside curl's with and without a sync, and
    beside the disk alone; [] when the disk rows did not run."""
    lines = ["## What the disk costs", "",
             f"Haul's default ends when the file is on the disk; curl ends when its bytes are in the page "
             f"cache. `{CURL_SYNCED}` is curl followed by `sync -d` of its output and directory (16 files at "
             f"a time in the batch): curl made as durable as Haul. `{DISK_FLOOR}` copies the same bytes from "
             f"the page cache to the same disk with no network and syncs them once at the end "
             f"(`dd conv=fdatasync`): the disk alone, when its writeback starts only at the end. Haul starts "
             f"the writeback of finished stretches while it downloads, so it can end before either. "
             f"Medians in seconds.", "",
             f"| scenario | haul | haul --no-sync | curl | {CURL_SYNCED} | {DISK_FLOOR} | haul / {CURL_SYNCED} "
             f"| haul / disk |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = 0
    for key in scenarios:
        figures = [median(results.get((key, name), []), "wall")
                   for name in (REFERENCE, "haul --no-sync", "curl", CURL_SYNCED, DISK_FLOOR)]
        haul, synced, floor = figures[0], figures[3], figures[4]
        if haul is None or floor is None:
            continue
        cells = ["—" if f is None else f"{f:.2f}" for f in figures]
        cells.append(f"{haul / synced:.2f}" if synced else "—")
        cells.append(f"{haul / floor:.2f}" if floor else "—")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
        rows += 1
    return lines + [""] if rows else []


def fixed_table(results, scenarios):
    """Default (adaptive) against the best `haul --fixed -x N` per scenario, or [] when not swept."""
    lines = ["## Default against the best fixed -x", "",
             f"`haul` (adaptive, at most 16 connections) against `haul --fixed -x N` for N in "
             f"{', '.join(map(str, SWEEP))}, in the same rounds (1 and 2 only where connections are not "
             f"limited: elsewhere they take 16-256 s). Goal: the default within 5% of the best.", "",
             "| scenario | default median (s) | its runs (s) | best fixed N | its median (s) | its runs (s) "
             "| default / best | met (≤ 1.05) |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    rows = 0
    for key, spec in scenarios.items():
        default = median(results.get((key, REFERENCE), []), "wall")
        swept = [(median(results[(key, sweep_name(n))], "wall"), n) for n in SWEEP
                 if results.get((key, sweep_name(n)))]
        if default is None or not swept:
            continue
        best, n = min(swept)
        ratio = default / best
        lines.append(f"| {key} | {default:.2f} | {spread(results[(key, REFERENCE)])} | {n} | {best:.2f} | "
                     f"{spread(results[(key, sweep_name(n))])} | {ratio:.2f} | {verdict(ratio <= 1.05)} |")
        rows += 1
    return lines + [""] if rows else []


def scenario_tables(results, scenarios, names):
    lines = []
    for key, spec in scenarios.items():
        reference = median(results.get((key, REFERENCE), []), "wall")
        lines += [f"## {spec['title']}", "",
                  "| tool | median time (s) | throughput (MiB/s) | CPU user+sys (s) | peak RSS (MiB) | checksums | ratio |",
                  "|---|---:|---:|---:|---:|---|---:|"]
        for name in names:
            runs = results.get((key, name), [])
            if not runs:
                continue
            wall, cpu = median(runs, "wall"), median(runs, "cpu")
            rss = max(r["rss"] for r in runs)
            ok = sum(r["sha_ok"] for r in runs)
            ratio = f"{wall / reference:.2f}" if reference else "—"
            lines.append(f"| {name} | {wall:.2f} | {spec['size'] / MiB / wall:.1f} | {cpu:.2f} | {rss:.1f} | "
                         f"{ok}/{len(runs)} | {ratio} |")
        lines.append("")
    return lines


def throughputs(results, scenarios, names):
    """(scenario, tool) -> median MiB/s as the tables print it, so --replot draws the same plot."""
    return {(key, name): round(scenarios[key]["size"] / MiB / median(results[(key, name)], "wall"), 1)
            for key in scenarios for name in names if results.get((key, name))}


def write_report(path, header, results, scenarios, names, plot, failures):
    """Writes the Markdown report; sections after KEPT_MARKER in an existing file are kept."""
    lines = header + [""] + targets_table(results, scenarios) + disk_table(results, scenarios)
    lines += [f"![Throughput per tool and scenario]({os.path.basename(plot)})", "", METHOD, ""]
    lines += scenario_tables(results, scenarios, names)
    lines += fixed_table(results, scenarios)
    lines += READING
    if failures:
        lines += ["## Failures", ""] + [f"- {f}" for f in failures] + [""]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    kept = ""
    if os.path.exists(path):
        previous = open(path).read()
        if KEPT_MARKER in previous:
            kept = "\n\n" + previous[previous.index(KEPT_MARKER):]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + kept)


def plotted(name):
    """The sweep rows are in their own table; the plot keeps one bar per tool."""
    return not name.startswith("haul --fixed")


def write_plot(path, scenarios, names, table):
    """Horizontal bars of median throughput, one panel per scenario, drawn by matplotlib (SVG).
    `scenarios` maps keys to titles."""
    import matplotlib
    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small, searchable SVG
    matplotlib.rcParams["svg.hashsalt"] = "haul"  # stable ids: the file changes only with the data

    names = [n for n in names if plotted(n)]
    panels = [(key, [n for n in names if (key, n) in table]) for key in scenarios]
    panels = [(key, present) for key, present in panels if present]
    if not panels:
        return
    colors = plt.get_cmap("tab10")
    heights = [0.5 + 0.3 * len(present) for _, present in panels]
    figure, axes = plt.subplots(len(panels), 1, figsize=(8, sum(heights) + 0.8), squeeze=False,
                                gridspec_kw={"height_ratios": heights})
    for axis, (key, present) in zip(axes[:, 0], panels):
        values = [table[(key, name)] for name in present]
        bars = axis.barh(range(len(present)), values, color=[colors(names.index(n) % 10) for n in present])
        axis.set_yticks(range(len(present)), labels=present)
        axis.invert_yaxis()
        axis.bar_label(bars, labels=[f"{v:.0f}" for v in values], padding=3, fontsize=8)
        axis.set_title(scenarios[key], loc="left", fontsize=10, fontweight="bold")
        axis.set_xlim(0, max(values) * 1.15 if max(values) > 0 else 1)
        axis.tick_params(labelsize=8)
        for side in ("top", "right"):
            axis.spines[side].set_visible(False)
    axes[-1, 0].set_xlabel("MiB/s")
    figure.suptitle("Median throughput (MiB/s), loopback, higher is better", fontsize=12, fontweight="bold")
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)


def replot(markdown, plot):
    """Redraws the plot from the throughput column of a report compare.py wrote."""
    by_title = {spec["title"]: key for key, spec in SCENARIOS.items()}
    titles, names, table, key = {}, [], {}, None
    with open(markdown) as handle:
        for line in handle:
            if line.startswith("## "):
                title = line[3:].strip()
                key = by_title.get(title.split(SCALED_MARK)[0])
                if key and key not in titles:
                    titles[key] = title
                continue
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if key is None or len(cells) < 3 or cells[0] in ("tool", "") or cells[0].startswith("---"):
                continue
            try:
                table[(key, cells[0])] = float(cells[2])
            except ValueError:
                continue
            if cells[0] not in names:
                names.append(cells[0])
    write_plot(plot, titles, names, table)
