#!/usr/bin/env bash
# Prepare the workstation environment: one virtualenv with the converter (torch, onnx2tf,
# TensorFlow, torch-pruning, COCO eval), the runtime and the test tools.
# Prints the virtualenv's path on stdout; everything else goes to stderr.
#
#   venv=$(bash deploy/workstation.sh)
#
# The virtualenv lives outside the checkout (it is 3.3 GB) and is reused while pyproject.toml is
# unchanged: $EDGE_YOLO_VENV, else /var/cache/edge-yolo/venv when writable, else ~/.cache/edge-yolo/venv.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}

if [[ -n "${EDGE_YOLO_VENV:-}" ]]; then
    venv=$EDGE_YOLO_VENV
elif mkdir -p /var/cache/edge-yolo 2>/dev/null && [[ -w /var/cache/edge-yolo ]]; then
    venv=/var/cache/edge-yolo/venv
else
    venv=${XDG_CACHE_HOME:-$HOME/.cache}/edge-yolo/venv
fi

"$python" - <<'PY' >&2 || { echo "edge-yolo: error: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2; exit 2; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

stamp="$venv/.edge-yolo-stamp"
want=$(cat "$repo/pyproject.toml" "$repo/deploy/workstation.sh" | sha256sum | cut -c1-16)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
    "$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e "$repo" >&2 2>/dev/null \
        || "$venv/bin/pip" install --quiet --no-deps -e "$repo" >&2
    echo "$venv"
    exit 0
fi

echo "edge-yolo: preparing $venv (first run downloads about 1 GB and takes a few minutes)" >&2
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
"${pip[@]}" torch==2.13.0 >&2
"${pip[@]}" -e "$repo[convert,mqtt,dev]" >&2
echo "$want" > "$stamp"
echo "$venv"
