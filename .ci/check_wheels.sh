#!/usr/bin/env bash
# Issue 29: the core is the distribution mmcore-torch (the name mmcore on PyPI belongs to an
# unrelated project). Builds wheels of the core and of one plugin, then asks pip, in a fresh
# venv, what `pip install mmcore-plugin-audio` would install (--dry-run: nothing is downloaded
# but metadata) and checks that the core comes from the wheel built here and that no
# distribution named mmcore is pulled in. Takes 15-40 s; needs no .venv (its own venv builds
# the wheels), only an index for the other dependencies, so .ci/run runs it beside make install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# torch resolves to this (as in the Makefile), so that pip never considers a CUDA build
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PLUGIN=mmcore-plugin-audio

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/src" dist="$work/dist"
mkdir -p "$src"
# build from a copy of the working tree's files (tracked or not ignored), so that no build/ or
# *.egg-info is left here and no stale build/ folder leaks into a wheel
git ls-files -z --cached --others --exclude-standard -- \
    pyproject.toml README.md LICENSE mmcore "plugins/$PLUGIN" \
  | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C "$src"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip wheel -q --no-deps -w "$dist" "$src" "$src/plugins/$PLUGIN"
echo "$TORCH_SPEC" > "$work/constraints.txt"
"$work/venv/bin/python" -m pip install -q --dry-run --report "$work/report.json" \
    -c "$work/constraints.txt" --find-links "$dist" "$PLUGIN" 2> "$work/pip.err" \
  || { cat "$work/pip.err" >&2; exit 1; }

"$work/venv/bin/python" - "$work/report.json" "$dist" "$PLUGIN" <<'EOF'
import json, re, sys
from pathlib import Path
from urllib.parse import unquote, urlparse

report, dist, plugin = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), sys.argv[3]
core = "mmcore-torch"
installs = {re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(): i for i in report["install"]}
problems = []
if "mmcore" in installs:
    problems.append(f"pip would install 'mmcore' {installs['mmcore']['metadata']['version']}"
                    f" from {installs['mmcore']['download_info']['url']} (an unrelated project)")
for name in (core, plugin):
    item = installs.get(name)
    url = item["download_info"]["url"] if item else ""
    local = urlparse(url).scheme == "file" and Path(unquote(urlparse(url).path)).parent == dist
    if not local:
        problems.append(f"{name} does not come from the wheel built here: {url or 'not installed'}")
if problems:
    sys.exit("check_wheels: " + "; ".join(problems))
print(f"check_wheels: pip install {plugin} installs {core} "
      f"{installs[core]['metadata']['version']} from the local wheel, no 'mmcore' "
      f"({len(installs)} distributions resolved)")
EOF
