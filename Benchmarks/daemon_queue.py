"""The daemon with 1000 queued downloads: latency of tellActive + tellWaiting, and resident memory.

Usage: python3 Benchmarks/daemon_queue.py HAUL_BINARY
Starts `haul daemon` on loopback with a private state directory, one download held by a server
that accepts and never answers, 999 waiting behind it; prints medians and the daemon's VmRSS.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def silent_server():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []

    def accept():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    return listener


def free_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def main():
    haul = sys.argv[1]
    work = tempfile.mkdtemp(prefix="haul-daemon-bench-")
    os.makedirs(f"{work}/root")
    port = free_port()
    secret = "bench-secret-123"
    silent = silent_server()
    target = f"http://127.0.0.1:{silent.getsockname()[1]}/held"
    daemon = subprocess.Popen([haul, "daemon", "--dir", f"{work}/root", "--state-dir", f"{work}/state",
                               "--listen", f"127.0.0.1:{port}", "--secret", secret, "-j", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def call(method, *params, parse=True):
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                               "params": [f"token:{secret}", *params]}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/jsonrpc", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
            return json.loads(raw) if parse else raw

        for _ in range(100):
            try:
                call("aria2.getVersion")
                break
            except OSError:
                time.sleep(0.05)
        started = time.perf_counter()
        for index in range(1000):
            call("aria2.addUri", [f"{target}/{index}"], {"out": f"f{index:04}.bin"})
        adding = time.perf_counter() - started
        active = call("aria2.tellActive")["result"]
        waiting = call("aria2.tellWaiting", 0, 1000)["result"]
        # The answer's time: request sent to the last byte received (the client's own JSON
        # parsing of ~450 KB is not the daemon's).
        samples = []
        for _ in range(30):
            begin = time.perf_counter()
            call("aria2.tellActive", parse=False)
            call("aria2.tellWaiting", 0, 1000, parse=False)
            samples.append(time.perf_counter() - begin)
        assert len(active) == 1 and len(waiting) == 999, (len(active), len(waiting))
        small = []
        for _ in range(30):
            begin = time.perf_counter()
            call("aria2.tellWaiting", 0, 1000, ["gid"])
            small.append(time.perf_counter() - begin)
        version = []
        for _ in range(30):
            begin = time.perf_counter()
            call("aria2.getVersion")
            version.append(time.perf_counter() - begin)
        with open(f"/proc/{daemon.pid}/status") as status:
            rss = next(line for line in status if line.startswith("VmRSS")).split()[1]
        print(f"1000 addUri calls (each saved and synced): {adding:.2f} s")
        print(f"tellActive + tellWaiting(0, 1000): median {statistics.median(samples) * 1000:.1f} ms, "
              f"max {max(samples) * 1000:.1f} ms over {len(samples)} rounds")
        print(f"tellWaiting(0, 1000, [gid]): median {statistics.median(small) * 1000:.1f} ms; "
              f"getVersion: median {statistics.median(version) * 1000:.1f} ms")
        print(f"daemon VmRSS with 1000 queued: {int(rss) / 1024:.1f} MiB")
    finally:
        daemon.terminate()
        daemon.wait()
        silent.close()


if __name__ == "__main__":
    main()
