#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal of a given size, optionally resizes it once, and prints
what the command wrote as JSON: {"status", "before", "after"} (output before and after the
resize). Bounded by --timeout: the command is killed (status -9) if it runs longer."""
import argparse
import fcntl
import json
import os
import pty
import select
import signal
import struct
import termios
import time


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cols", type=int, default=80)
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--resize-after", type=float)
    parser.add_argument("--resize-cols", type=int)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    pid, master = pty.fork()
    if pid == 0:
        set_size(0, args.rows, args.cols)
        os.execv(command[0], command)
    start = time.monotonic()
    chunks = {"before": b"", "after": b""}
    phase = "before"
    while True:
        now = time.monotonic()
        if now - start > args.timeout:
            os.kill(pid, signal.SIGKILL)
            break
        if phase == "before" and args.resize_after is not None and now - start >= args.resize_after:
            set_size(master, args.rows, args.resize_cols)  # the kernel sends SIGWINCH
            phase = "after"
        ready, _, _ = select.select([master], [], [], 0.05)
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks[phase] += data
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    print(json.dumps({"status": code,
                      "before": chunks["before"].decode("utf-8", "replace"),
                      "after": chunks["after"].decode("utf-8", "replace")}))


if __name__ == "__main__":
    main()
