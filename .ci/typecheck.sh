#!/usr/bin/env bash
# mypy on the boxbench package (the repository root is the package: a link named boxbench makes it
# importable as such for mypy, which does not follow the editable install's import hook).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
link=$(mktemp -d)
trap 'rm -rf "$link"' EXIT
ln -s "$root" "$link/boxbench"
cd "$link"
MYPYPATH="$link" python -m mypy --config-file "$root/pyproject.toml" -p boxbench
