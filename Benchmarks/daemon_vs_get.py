"""1 GiB from nginx on loopback: `haul get` beside the same download through `haul daemon`.

Usage: python3 Benchmarks/daemon_vs_get.py HAUL_BINARY [--rounds N] [--work DIR]
Interleaved rounds; each output's SHA-256 is checked. The daemon's time runs from `addUri` to
the status `complete` (polled every 20 ms), the daemon already running.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import compare  # noqa: E402  (the nginx setup and files of the side-by-side benchmark)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("haul")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", default="/tmp/haul-compare")
    args = parser.parse_args()
    digests = compare.prepare(args.work, ["unthrottled-1g"])
    port = compare.free_port()
    with open(f"{args.work}/nginx.conf", "w") as handle:
        handle.write(compare.NGINX_CONF.format(work=args.work, port=port))
    subprocess.run(["nginx", "-c", f"{args.work}/nginx.conf", "-p", args.work], check=True)
    url = f"http://127.0.0.1:{port}/fast/1g.bin"
    rpc_port = compare.free_port()
    root = f"{args.work}/daemon-root"
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    secret = "bench-secret-123"
    daemon = subprocess.Popen([args.haul, "daemon", "--dir", root, "--state-dir", f"{args.work}/daemon-state",
                               "--listen", f"127.0.0.1:{rpc_port}", "--secret", secret, "-x", "16"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def call(method, *params):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": [f"token:{secret}", *params]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{rpc_port}/jsonrpc", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    times = {"haul get -x16": [], "haul daemon -x16": []}
    try:
        for _ in range(100):
            try:
                call("aria2.getVersion")
                break
            except OSError:
                time.sleep(0.05)
        for round_index in range(args.rounds):
            out = f"{args.work}/out/get.bin"
            if os.path.exists(out):
                os.remove(out)
            subprocess.run(["sync"], check=False)
            started = time.monotonic()
            subprocess.run([args.haul, "get", url, "-o", out, "-q", "-x", "16"], check=True)
            times["haul get -x16"].append(time.monotonic() - started)
            assert compare.sha256(out) == digests["1g.bin"], "haul get: wrong bytes"
            os.remove(out)

            name = f"d{round_index}.bin"
            subprocess.run(["sync"], check=False)
            started = time.monotonic()
            gid = call("aria2.addUri", [url], {"out": name})["result"]
            while True:
                status = call("aria2.tellStatus", gid, ["status", "errorMessage"])["result"]
                if status["status"] in ("complete", "error", "removed"):
                    break
                time.sleep(0.02)
            times["haul daemon -x16"].append(time.monotonic() - started)
            assert status["status"] == "complete", status
            assert compare.sha256(f"{root}/{name}") == digests["1g.bin"], "daemon: wrong bytes"
            os.remove(f"{root}/{name}")
            print(f"round {round_index + 1}: get {times['haul get -x16'][-1]:.2f} s, "
                  f"daemon {times['haul daemon -x16'][-1]:.2f} s", flush=True)
    finally:
        daemon.terminate()
        daemon.wait()
        subprocess.run(["nginx", "-c", f"{args.work}/nginx.conf", "-p", args.work, "-s", "stop"], check=False)
    get = statistics.median(times["haul get -x16"])
    through = statistics.median(times["haul daemon -x16"])
    print(f"medians: haul get {get:.2f} s, through the daemon {through:.2f} s, ratio {through / get:.3f}")


if __name__ == "__main__":
    main()
