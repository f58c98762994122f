"""Drives a running haul daemon with aria2p, aria2's own Python client, unchanged.

Usage: aria2p_check.py PORT SECRET URL SHA256 ROOT
Exits 0 when every step behaved as aria2 would; prints what differed otherwise.
"""
import hashlib
import os
import sys
import time

import aria2p


def main():
    port, secret, url, digest, root = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    api = aria2p.API(aria2p.Client(host="http://127.0.0.1", port=int(port), secret=secret))
    version = api.client.get_version()
    assert "version" in version, version

    # Notifications over the WebSocket at /jsonrpc, as aria2 sends them.
    events = []
    api.listen_to_notifications(
        threaded=True,
        on_download_start=lambda api_, gid: events.append(("start", gid)),
        on_download_complete=lambda api_, gid: events.append(("complete", gid)),
        on_download_error=lambda api_, gid: events.append(("error", gid)),
        timeout=1,
    )
    time.sleep(0.5)

    download = api.add_uris([url], options={"out": "from-aria2p.bin", "split": "4"})
    assert len(download.gid) == 16, download.gid
    deadline = time.time() + 30
    while time.time() < deadline:
        download.update()
        if download.status in ("complete", "error", "removed"):
            break
        time.sleep(0.1)
    assert download.status == "complete", (download.status, download.error_message)
    assert download.total_length == download.completed_length > 0, (download.total_length, download.completed_length)
    path = os.path.join(root, "from-aria2p.bin")
    assert str(download.files[0].path) == path, download.files[0].path
    with open(path, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == digest, "bytes differ"

    deadline = time.time() + 10
    while time.time() < deadline and ("complete", download.gid) not in events:
        time.sleep(0.1)
    assert ("start", download.gid) in events, events
    assert ("complete", download.gid) in events, events

    listed = [d.gid for d in api.get_downloads()]
    assert download.gid in listed, listed
    stats = api.get_stats()
    assert stats.num_stopped >= 1, stats.num_stopped

    # A download that cannot succeed fails with aria2's error fields filled in.
    broken = api.add_uris([url.rsplit("/", 1)[0] + "/missing.bin"])
    deadline = time.time() + 30
    while time.time() < deadline:
        broken.update()
        if broken.status in ("complete", "error", "removed"):
            break
        time.sleep(0.1)
    assert broken.status == "error", broken.status
    assert broken.error_code == "3", broken.error_code
    deadline = time.time() + 10
    while time.time() < deadline and ("error", broken.gid) not in events:
        time.sleep(0.1)
    assert ("error", broken.gid) in events, events
    api.stop_listening()

    api.remove([broken], clean=False)
    api.purge()
    assert api.get_stats().num_stopped == 0
    print("aria2p: ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as failure:
        print(f"aria2p: {failure!r}")
        sys.exit(1)
