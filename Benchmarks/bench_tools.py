"""The scenarios compare.py measures and each tool's command line for them."""
import os
import subprocess

MiB = 1 << 20

SCENARIOS = {
    "unthrottled-1g": dict(title="1 GiB, unthrottled", file="1g.bin", size=1024 * MiB, location="fast"),
    "throttled-256m": dict(title="256 MiB, limit_rate 8m per connection", file="256m.bin", size=256 * MiB,
                           location="throttled"),
    "mixed-256m": dict(title="256 MiB, mixed: even connections 1 MiB/s, odd 8 MiB/s", file="256m.bin",
                       size=256 * MiB, location="mixed"),
    "sha256-1g": dict(title="1 GiB with SHA-256 verification", file="1g.bin", size=1024 * MiB, location="fast",
                      checksum=True),
    "batch-200x1m": dict(title="200 files of 1 MiB each (batch)", file="batch", size=200 * MiB, location="fast",
                         batch=200),
    "https-unthrottled-1g": dict(title="HTTPS, 1 GiB, unthrottled", file="1g.bin", size=1024 * MiB,
                                 location="fast", scheme="https"),
    "https-throttled-256m": dict(title="HTTPS, 256 MiB, limit_rate 8m per connection", file="256m.bin",
                                 size=256 * MiB, location="throttled", scheme="https"),
}

# The connection counts `haul --fixed -x N` is measured with, to find the best fixed count per scenario.
SWEEP = (1, 2, 4, 8, 16)
SCALED_MARK = " (sizes ÷ "  # how the title of a scaled scenario ends, up to the divisor
REFERENCE = "haul"  # the first row: Haul's defaults (adaptive connection count, -x at most 16)
# Rows that show what the disk costs: curl made as durable as Haul's default (its output synced,
# then its directory), and the same bytes copied from the page cache with no network at all.
CURL_SYNCED = "curl + sync"
DISK_FLOOR = "disk: dd + fdatasync"


def sweep_name(n):
    return f"haul --fixed -x {n}"


def scaled(scenarios, divisor):
    """The scenarios with every file size divided by `divisor` (for quick smoke runs); the titles
    say so."""
    if divisor <= 1:
        return scenarios
    result = {}
    for key, spec in scenarios.items():
        spec = dict(spec)
        if spec.get("batch"):
            spec["file_size"] = max(1, file_size(spec) // divisor)
            spec["size"] = spec["file_size"] * spec["batch"]
        else:
            spec["size"] = max(1, spec["size"] // divisor)
        spec["title"] = f"{spec['title']}{SCALED_MARK}{divisor})"
        result[key] = spec
    return result


def file_size(spec):
    """Bytes of each file the scenario downloads."""
    if "file_size" in spec:
        return spec["file_size"]
    return spec["size"] // spec["batch"] if spec.get("batch") else spec["size"]


def supports_fixed(haul):
    """Whether this haul binary has `get --fixed` (an older one treats -x as a quota anyway)."""
    try:
        result = subprocess.run([haul, "get", "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--fixed" in result.stdout + result.stderr


def runs_on(name, spec):
    """curl (one connection, also synced), the disk alone, `haul --no-sync`, URLSession and the
    sweep's one and two connections run only where connections are not limited; URLSession
    cannot be told to trust the test CA on Linux (swift-corelibs-foundation reads no CA file outside
    Android), so it does not run over HTTPS."""
    if name in ("curl", "URLSession", CURL_SYNCED, DISK_FLOOR) and spec["location"] != "fast":
        return False
    if name == "haul --no-sync" and spec["location"] != "fast":
        return False  # a limited connection, not the disk, sets the pace there
    if name in (sweep_name(1), sweep_name(2)) and spec["location"] != "fast":
        # One or two connections limited to 8 MiB/s (1 MiB/s on a slow one) take 16-256 s and
        # cannot be the best count: not run.
        return False
    return not (name == "URLSession" and spec.get("scheme") == "https")


def tools(haul, urlsession, www, seam_rows=False, sweep=()):
    """Each tool with the options its documentation recommends for speed, in row order. Each entry
    takes the URL, the output path, the expected SHA-256 (verified by the tool itself in the checksum
    scenario, None elsewhere) and the CA file for HTTPS (None over HTTP), and returns argv, or None
    when the tool has no part in the scenario. `www` is the directory nginx serves (the disk floor
    copies from it)."""
    def haul_row(*options, checksum=True):
        def argv(url, out, digest, cacert):
            if digest and not checksum:
                return None
            return ([haul, "get", url, "-o", out, "-q", *options]
                    + (["--cacert", cacert] if cacert else []) + (["--sha256", digest] if digest else []))
        return argv

    def aria2(url, out, digest, cacert):
        argv = ["aria2c", "-q", "-x16", "-s16", "-k1M", "--file-allocation=falloc", "--allow-overwrite=true",
                "-d", os.path.dirname(out), "-o", os.path.basename(out), url]
        if cacert:
            argv.append(f"--ca-certificate={cacert}")
        return argv + [f"--checksum=sha-256={digest}"] if digest else argv

    def curl(url, out, digest, cacert):
        ca = ["--cacert", cacert] if cacert else []
        if not digest:
            return ["curl", "-s", "-f", *ca, "-o", out, url]
        ca_text = f"--cacert '{cacert}' " if cacert else ""
        return ["sh", "-c", f"curl -s -f {ca_text}-o '{out}' '{url}' && echo '{digest}  {out}' | sha256sum -c --quiet"]

    def curl_synced(url, out, digest, cacert):
        # What Haul's default waits for: the file's data on the disk, then its directory entry.
        if digest:
            return None
        ca_text = f"--cacert '{cacert}' " if cacert else ""
        return ["sh", "-c", f"curl -s -f {ca_text}-o '{out}' '{url}' && sync -d '{out}' '{os.path.dirname(out)}'"]

    def disk_floor(url, out, digest, cacert):
        # The served file is in the page cache: this is the disk alone, no network.
        source = os.path.join(www, url.rsplit("/", 1)[1])
        return None if digest else ["dd", f"if={source}", f"of={out}", "bs=1M", "conv=fdatasync", "status=none"]

    def axel(url, out, digest, cacert):
        # axel has no CA option: over HTTPS it runs with -k (no certificate check).
        return None if digest else ["axel", "-q", "-n", "16", *(["-k"] if cacert else []), "-o", out, url]

    rows = {
        REFERENCE: haul_row(),
        "haul --no-hash": haul_row("--no-hash", checksum=False),
        "haul --no-sync": haul_row("--no-sync", checksum=False),
    }
    if seam_rows:
        rows["haul --seam-overlap 0"] = haul_row("--seam-overlap", "0", checksum=False)
    for n in sweep:
        rows[sweep_name(n)] = haul_row("--fixed", "-x", str(n))
    rows.update({
        "curl": curl,
        CURL_SYNCED: curl_synced,
        DISK_FLOOR: disk_floor,
        "aria2c -x16 -s16": aria2,
        "axel -n16": axel,
        "URLSession": lambda url, out, digest, cacert: None if digest or cacert else [urlsession, url, out],
    })
    return rows


def batch_tools(haul, www):
    """The batch scenario: each tool reads a list of URLs and fills a directory, 16 at a time.
    The synced rows sync 16 files at a time too (Haul syncs finished files side by side)."""
    batch = os.path.join(www, "batch")
    def haul_row(*options):
        return lambda listing, out: [haul, "get", "-i", listing, "-d", out, "-j", "16", "-q", *options]

    return {
        REFERENCE: haul_row(),
        "haul --no-hash": haul_row("--no-hash"),
        "haul --no-sync": haul_row("--no-sync"),
        "curl": lambda listing, out: ["sh", "-c", f"cd '{out}' && xargs curl -s -f --parallel --parallel-max 16 "
                                                  f"--remote-name-all < '{listing}'"],
        CURL_SYNCED: lambda listing, out: ["sh", "-c", f"cd '{out}' && xargs curl -s -f --parallel --parallel-max 16 "
                                                       f"--remote-name-all < '{listing}' && ls | xargs -P 16 -n 13 "
                                                       f"sync -d && sync -d ."],
        DISK_FLOOR: lambda listing, out: ["sh", "-c", f"cd '{batch}' && ls | xargs -P 16 -I@ dd if=@ of='{out}/@' "
                                                      f"bs=1M conv=fdatasync status=none && sync -d '{out}'"],
        "aria2c -x16 -s16": lambda listing, out: ["aria2c", "-q", "-i", listing, "-d", out, "-j", "16", "-x16",
                                                  "-s16", "-k1M", "--file-allocation=falloc",
                                                  "--allow-overwrite=true"],
    }
