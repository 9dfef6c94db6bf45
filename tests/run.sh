#!/usr/bin/env bash
# The whole test suite, from a fresh machine: workstation environment, the real converted test
# models (cached by content), a system package check, pytest on x86_64, then the runtime's tests
# on aarch64 under QEMU.
#
#   bash tests/run.sh [pytest args...]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

need_apt=()
command -v mosquitto >/dev/null || need_apt+=(mosquitto)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
if ((${#need_apt[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "tests: error: missing ${need_apt[*]}: install them (sudo apt-get install ${need_apt[*]})" >&2
        exit 2
    fi
    echo "tests: installing ${need_apt[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi

venv=$(bash deploy/workstation.sh)
export PATH="$venv/bin:$PATH"

EDGE_YOLO_TEST_MODELS=$("$venv/bin/python" -m tests.model_cache --imgsz 320)
export EDGE_YOLO_TEST_MODELS
export EDGE_YOLO_X86_REFERENCE="$EDGE_YOLO_TEST_MODELS/detections_x86_64.json"
echo "tests: models in $EDGE_YOLO_TEST_MODELS" >&2

status=0
"$venv/bin/python" -m pytest -q "$@" || status=$?

if [[ -x tests/aarch64/run.sh && -z "${EDGE_YOLO_SKIP_AARCH64:-}" ]]; then
    bash tests/aarch64/run.sh || status=$?
fi
exit $status
