#!/usr/bin/env bash
# Side-by-side comparison on loopback (see compare.py). Run through `make compare`.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT="${SWIFT:-$(command -v swift || echo /opt/swift/usr/bin/swift)}"
SWIFTC="$(dirname "$SWIFT")/swiftc"
mkdir -p .build
# The plot is drawn by matplotlib.
bash scripts/ensure-python-packages.sh matplotlib==3.11.2
"$SWIFTC" -O -swift-version 5 Benchmarks/URLSessionDownload/main.swift -o .build/urlsession-download
# The fixed -x sweep is on here; pass --no-fixed-sweep (make compare COMPARE_ARGS=--no-fixed-sweep) to skip it.
exec python3 Benchmarks/compare.py --haul "$("$SWIFT" build -c release --show-bin-path)/haul" \
    --urlsession .build/urlsession-download --fixed-sweep "$@"
