#!/usr/bin/env bash
# Side-by-side comparison on loopback (see compare.py). Run through `make compare`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 Benchmarks/compare.py --haul "$(swift build -c release --show-bin-path)/haul" "$@"
