#!/usr/bin/env bash
# The built wheel, not the editable tree: build it, install it into a fresh venv and run
# `boxbench list` and `boxbench check` on every suite the wheel ships, from outside the repository.
# The fresh venv reads its dependencies (torch, transformers, the model wheels) from the CI venv's
# site-packages through a .pth line, so nothing is downloaded twice; a folder named in a .pth line
# is only put on sys.path (its own .pth files, such as the editable install's finder, are not read),
# so `import boxbench` can only find the wheel's copy — checked below.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m pip wheel --no-deps --no-build-isolation -q "$root" -w "$work/dist"
rm -rf "$root/build"
python3 -m venv --without-pip "$work/venv"
deps=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
fresh=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
python -m pip --python "$work/venv/bin/python" install -q --no-deps "$work"/dist/boxbench-*.whl
echo "$deps" > "$fresh/zz-ci-deps.pth"
export BOXBENCH_DATA="${BOXBENCH_DATA:-$root/../shared/data}"
cd "$work"
"$work/venv/bin/python" -c "import boxbench, sys; p = boxbench.__file__; sys.exit(0 if p.startswith('$fresh') else f'boxbench imported from {p}, not the wheel')"
"$work/venv/bin/boxbench" list > /dev/null
n=0
for suite in "$fresh"/boxbench/benchmarks/suites/*.yaml; do
  "$work/venv/bin/boxbench" check "$suite" > /dev/null 2> "$work/check.err" || { cat "$work/check.err"; exit 1; }
  n=$((n + 1))
done
python - "$work"/dist/boxbench-*.whl <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for sub in ("methods", "backends", "benchmarks", "benchmarks/perf", "benchmarks/fidelity", "benchmarks/suites", "reports"):
    assert any(n.startswith(f"boxbench/{sub}/") for n in names), f"the wheel lacks boxbench/{sub}"
PY
echo "wheel check: boxbench list and boxbench check of $n shipped suites from the installed wheel: ok"
