#!/usr/bin/env bash
# Run the device runtime's tests on aarch64 under QEMU user-mode emulation, with the aarch64 wheels
# that 64-bit Raspberry Pi OS (bookworm, Python 3.11) installs from deploy/requirements-pi.txt.
#
#   tests/aarch64/run.sh [pytest args...]     default args: tests/edge (paths relative to the repo root)
#   tests/aarch64/run.sh --prepare-only       build or check the cached environment, run nothing
#   tests/aarch64/run.sh --rebuild [...]      discard the cached environment first
#
# Preparation, cached outside the clone in $EDGE_YOLO_AARCH64_CACHE (default /var/cache/edge-yolo/aarch64):
#   qemu/      qemu-aarch64 taken from bookworm-backports' qemu-user (10.x; bookworm's own 7.2
#              crashes in ai-edge-litert 2.2/2.3's Interpreter constructor), registered in
#              binfmt_misc as "edge-yolo-aarch64" so aarch64 programs, console scripts and
#              subprocesses started by the tests run transparently;
#   env-KEY/   sysroot/: arm64 bookworm python3.11 + libstdc++6 unpacked from Debian's .debs
#              (QEMU_LD_PREFIX); venv/: a virtualenv over it holding the pinned wheels, unpacked by
#              the host's pip; everything byte-compiled ahead, since compiling under emulation
#              makes each import several times slower. KEY hashes this script and both requirement
#              files. The tree is built under a scratch name and renamed once complete and checked
#              (tests/aarch64/smoke.py), so an interrupted build is discarded, never reused.
#   apt/, downloads/   private apt state and every downloaded .deb and wheel; the host's apt
#              configuration and package state are left untouched.
# A lock serialises preparation; runs share it. Network access only when the cache is cold.
# Needs root (binfmt_misc), apt-get, dpkg-deb, GNU tar, flock and a host python3 with pip.
#
# Environment passed to the tests: EDGE_YOLO_TEST_MODELS (directory of converted .tflite models),
# EDGE_YOLO_DATA (default: shared/ beside the clone, else /work/shared), EDGE_YOLO_X86_REFERENCE
# (JSON file of detections written by the same tests on x86, compared with the aarch64 ones) and
# any other EDGE_YOLO_* variable; paths are made absolute. EDGE_YOLO_EMULATION=qemu-user is added
# so tests can scale their time limits: emulated inference is two orders of magnitude slower than
# native. The host environment is not inherited otherwise. EDGE_YOLO_QEMU_CPU selects the emulated
# core: cortex-a72 (Raspberry Pi 4, default) or cortex-a76 (Raspberry Pi 5).
# Exit status: pytest's; 2 when preparation fails.
set -euo pipefail

readonly PY_VER=3.11
readonly SYSROOT_PKGS=(python3.11 libstdc++6)
readonly QEMU_MIN_MAJOR=10
readonly BINFMT_NAME=edge-yolo-aarch64
readonly BINFMT_DIR=/proc/sys/fs/binfmt_misc
# ELF, 64-bit, little-endian, executable or shared object, machine 183 (AArch64).
readonly ELF_MAGIC='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
readonly ELF_MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
readonly ELF_MAGIC_HEX=7f454c460201010000000000000000000200b700

die() { echo "run.sh: error: $*" >&2; exit 2; }
log() { echo "[aarch64] $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT")/../.." && pwd -P)
REQ_RUNTIME=$REPO/deploy/requirements-pi.txt
REQ_TEST=$REPO/tests/aarch64/requirements-test.txt
SMOKE=$REPO/tests/aarch64/smoke.py
CACHE=${EDGE_YOLO_AARCH64_CACHE:-/var/cache/edge-yolo/aarch64}
MIRROR=${EDGE_YOLO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${EDGE_YOLO_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
QEMU_CPU_MODEL=${EDGE_YOLO_QEMU_CPU:-cortex-a72}
HOST_PYTHON=${EDGE_YOLO_HOST_PYTHON:-python3}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

t_prepare=$(now)
prepare_only=0
rebuild=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --prepare-only) prepare_only=1; shift ;;
        --rebuild) rebuild=1; shift ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || set -- tests/edge

# --- checks -----------------------------------------------------------------------------------
[[ $(uname -m) == x86_64 ]] || die "expected an x86_64 host, found $(uname -m)"
[[ $EUID -eq 0 ]] || die "must run as root (it registers a binfmt_misc handler)"
for tool in apt-get apt-cache dpkg-deb tar flock sha256sum awk "$HOST_PYTHON"; do
    command -v "$tool" >/dev/null || die "required tool not found: $tool"
done
"$HOST_PYTHON" -m pip --version >/dev/null 2>&1 || die "$HOST_PYTHON has no pip"
[[ -r $KEYRING ]] || die "Debian archive keyring missing: $KEYRING (apt-get install debian-archive-keyring)"
for f in "$REQ_RUNTIME" "$REQ_TEST" "$SMOKE"; do [[ -r $f ]] || die "missing file: $f"; done
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd -P)
case $CACHE/ in "$REPO"/*) die "cache $CACHE must lie outside the clone $REPO" ;; esac
case $CACHE in *:*|*' '*) die "cache path must not contain ':' or spaces: $CACHE" ;; esac

# Exact pins only: "name==version" per line, comments and blank lines allowed.
pinned_names() {
    awk -v file="$1" '
        { sub(/#.*/, ""); gsub(/[ \t\r]/, "") }
        $0 == "" { next }
        $0 !~ /^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!-]+$/ { print "bad pin in " file ": " $0 > "/dev/stderr"; bad = 1; next }
        { split($0, p, "=="); n = tolower(p[1]); gsub(/[-_.]+/, "-", n); print n }
        END { exit bad }' "$1"
}
pinned_names "$REQ_RUNTIME" >/dev/null || die "$REQ_RUNTIME must pin exact versions (name==version)"
pinned_names "$REQ_TEST" >/dev/null || die "$REQ_TEST must pin exact versions (name==version)"

KEY=$(cat "$SCRIPT" "$SMOKE" "$REQ_RUNTIME" "$REQ_TEST" | sha256sum | cut -c1-16)
ENV_DIR=$CACHE/env-$KEY
VENV=$ENV_DIR/venv
SYSROOT=$ENV_DIR/sysroot
SITE=$VENV/lib/python$PY_VER/site-packages

exec 9>>"$CACHE/.lock"
flock -x 9

# --- qemu -------------------------------------------------------------------------------------
# apt options for a private state rooted at $1 with the sources in $1/sources.list.
apt_opts() {
    local root=$1
    printf '%s\n' \
        -o "Dir::Etc::SourceList=$root/sources.list" -o "Dir::Etc::SourceParts=$root/sources.list.d" \
        -o "Dir::Etc::Preferences=$root/preferences" -o "Dir::Etc::PreferencesParts=$root/preferences.d" \
        -o "Dir::State=$root/state" -o "Dir::State::status=$root/state/status" \
        -o "Dir::Cache=$root/cache" -o "APT::Sandbox::User=root" -o "Acquire::Languages=none" \
        -o "Debug::NoLocking=1" -o "APT::Install-Recommends=0"
}
apt_root() {   # apt_root DIR SOURCES-LINE...
    local root=$1; shift
    mkdir -p "$root/sources.list.d" "$root/preferences.d" "$root/state/lists/partial" "$root/cache/archives/partial"
    : >"$root/preferences"
    [[ -e $root/state/status ]] || : >"$root/state/status"
    printf '%s\n' "$@" >"$root/sources.list"
}

qemu_major() { { "$1" --version 2>/dev/null || true; } | awk 'NR == 1 { split($3, v, "."); m = v[1] } END { print m + 0 }'; }

prepare_qemu() {
    local current=$CACHE/qemu/current/qemu-aarch64
    if [[ -x $current ]] && (( $(qemu_major "$current") >= QEMU_MIN_MAJOR )); then
        QEMU=$(readlink -f "$current"); return
    fi
    local t=$(now)
    local root=$CACHE/apt/host debs=$CACHE/downloads/qemu
    apt_root "$root" "deb [signed-by=$KEYRING] $MIRROR bookworm-backports main"
    local -a opts; mapfile -t opts < <(apt_opts "$root")
    apt-get "${opts[@]}" -q update >"$root/update.log" 2>&1 || die "apt-get update for bookworm-backports failed, see $root/update.log"
    local version
    version=$(apt-cache "${opts[@]}" policy qemu-user | awk '/Candidate:/ { print $2 }')
    [[ -n $version && $version != "(none)" ]] || die "qemu-user not found in bookworm-backports"
    mkdir -p "$debs"
    (cd "$debs" && apt-get "${opts[@]}" -q download "qemu-user=$version" >"$root/download.log" 2>&1) \
        || die "apt-get download qemu-user=$version failed, see $root/download.log"
    local deb name=${version#*:}
    deb=$(ls -t "$debs"/qemu-user_*"${name}"_amd64.deb 2>/dev/null | head -1) || true
    [[ -n $deb ]] || die "apt-get download left no qemu-user .deb in $debs"
    local tmp=$CACHE/qemu/$name.partial
    rm -rf "$tmp"; mkdir -p "$tmp"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --strip-components=3 ./usr/bin/qemu-aarch64 \
        || die "could not extract qemu-aarch64 from $deb"
    (( $(qemu_major "$tmp/qemu-aarch64") >= QEMU_MIN_MAJOR )) || die "qemu-aarch64 from $deb is older than $QEMU_MIN_MAJOR"
    rm -rf "$CACHE/qemu/$name"; mv -T "$tmp" "$CACHE/qemu/$name"
    ln -sfn "$name" "$CACHE/qemu/current.new" && mv -T "$CACHE/qemu/current.new" "$CACHE/qemu/current"
    local old
    for old in "$CACHE"/qemu/*; do
        [[ $old == "$CACHE/qemu/$name" || $old == "$CACHE/qemu/current" ]] || rm -rf "$old"
    done
    QEMU=$CACHE/qemu/$name/qemu-aarch64
    log "qemu-user $version fetched from bookworm-backports ($(since "$t") s)"
}

register_binfmt() {
    if [[ ! -e $BINFMT_DIR/register ]]; then
        mount -t binfmt_misc binfmt_misc "$BINFMT_DIR" 2>/dev/null || die "cannot mount binfmt_misc at $BINFMT_DIR"
    fi
    [[ $(cat "$BINFMT_DIR/status") == enabled ]] || die "binfmt_misc is disabled ($BINFMT_DIR/status)"
    local entry=$BINFMT_DIR/$BINFMT_NAME other=0 f
    # Newer registrations are tried first: another enabled aarch64 handler (for example Debian's
    # qemu-user-static 7.2) would shadow this one, so re-register to take precedence.
    for f in "$BINFMT_DIR"/*; do
        [[ $f == "$entry" || $f == */register || $f == */status ]] && continue
        if grep -qx enabled "$f" 2>/dev/null && grep -q "^magic $ELF_MAGIC_HEX" "$f" 2>/dev/null; then other=1; fi
    done
    if [[ -e $entry ]]; then
        if (( ! other )) && grep -qx enabled "$entry" && grep -qx "interpreter $QEMU" "$entry"; then return; fi
        echo -1 >"$entry"
    fi
    printf '%s' ":$BINFMT_NAME:M::$ELF_MAGIC:$ELF_MASK:$QEMU:F" >"$BINFMT_DIR/register" \
        || die "could not register the binfmt_misc handler $BINFMT_NAME"
    log "registered binfmt_misc handler $BINFMT_NAME -> $QEMU"
}

# --- aarch64 environment ----------------------------------------------------------------------
PLATFORM_ARGS=(--only-binary=:all: --python-version "$PY_VER" --implementation cp
               --abi "cp${PY_VER/./}" --abi abi3 --abi none)
# pip 23 does not expand a manylinux_2_N tag to older ones: list every glibc up to bookworm's 2.36.
for minor in $(seq 17 36); do PLATFORM_ARGS+=(--platform "manylinux_2_${minor}_aarch64"); done
PLATFORM_ARGS+=(--platform manylinux2014_aarch64 --platform linux_aarch64)

host_pip() { "$HOST_PYTHON" -m pip --disable-pip-version-check --no-input "$@"; }

# Download the wheels for the given requirement files, with their dependencies, and fail if
# the resolution needed a distribution that the files do not pin.
download_wheels() {
    local wheels=$CACHE/downloads/wheels logf=$CACHE/downloads/pip-download.log
    mkdir -p "$wheels"
    local -a reqs=() names=()
    local f; for f in "$@"; do reqs+=(-r "$f"); mapfile -t -O "${#names[@]}" names < <(pinned_names "$f"); done
    host_pip download --no-cache-dir -d "$wheels" "${PLATFORM_ARGS[@]}" "${reqs[@]}" >"$logf" 2>&1 \
        || die "pip download failed, see $logf"
    local found missing="" line
    found=$(awk '/^ *(Saved|File was already downloaded) .*\.whl$/ {
                     f = $NF; sub(/.*\//, "", f); split(f, p, "-")
                     n = tolower(p[1]); gsub(/[-_.]+/, "-", n); print n "==" p[2] }' "$logf" | sort -u)
    while IFS= read -r line; do
        [[ -n $line ]] || continue
        printf '%s\n' "${names[@]}" | grep -qx -F "${line%%==*}" || missing+="$line "
    done <<<"$found"
    [[ -z $missing ]] || die "unpinned dependencies: ${missing}- pin them in ${*##*/}"
}

install_wheels() {   # install_wheels TARGET REQUIREMENTS
    host_pip install --no-cache-dir --no-index --find-links "$CACHE/downloads/wheels" --no-deps \
        --no-compile --target "$1" "${PLATFORM_ARGS[@]}" -r "$2" >>"$BUILD/pip-install.log" 2>&1 \
        || die "pip install into $1 failed, see $BUILD/pip-install.log"
}

build_sysroot() {   # build_sysroot DIR
    local root=$CACHE/apt/arm64 sysroot=$1
    apt_root "$root" \
        "deb [signed-by=$KEYRING] $MIRROR bookworm main" \
        "deb [signed-by=$KEYRING] $MIRROR bookworm-updates main" \
        "deb [signed-by=$KEYRING] $SECURITY_MIRROR bookworm-security main"
    local -a opts; mapfile -t opts < <(apt_opts "$root")
    opts+=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64)
    apt-get "${opts[@]}" -q update >"$root/update.log" 2>&1 || die "apt-get update (arm64) failed, see $root/update.log"
    # The empty private status makes apt resolve the whole dependency closure.
    local -a debs
    mapfile -t debs < <(apt-get "${opts[@]}" -s install "${SYSROOT_PKGS[@]}" \
        | awk '/^Inst / { v = $3; sub(/^\(/, "", v); gsub(/:/, "%3a", v); match($0, /\[[a-z0-9]+\]\)/); a = substr($0, RSTART + 1, RLENGTH - 3)
                          print $2 "_" v "_" a ".deb" }')
    (( ${#debs[@]} > 0 )) || die "apt could not resolve ${SYSROOT_PKGS[*]} for arm64"
    apt-get "${opts[@]}" -q -y -d install "${SYSROOT_PKGS[@]}" >"$root/download.log" 2>&1 \
        || die "downloading the arm64 packages failed, see $root/download.log"
    mkdir -p "$sysroot/usr/bin" "$sysroot/usr/sbin" "$sysroot/usr/lib" "$sysroot/etc"
    ln -s usr/bin "$sysroot/bin"; ln -s usr/sbin "$sysroot/sbin"; ln -s usr/lib "$sysroot/lib"
    local deb
    for deb in "${debs[@]}"; do
        [[ -f $root/cache/archives/$deb ]] || die "expected package file missing: $root/cache/archives/$deb"
        dpkg-deb --fsys-tarfile "$root/cache/archives/$deb" \
            | tar -x -C "$sysroot" --keep-directory-symlink --no-same-owner \
                --exclude=./usr/share/doc --exclude=./usr/share/man --exclude=./usr/share/locale \
                --exclude=./usr/share/lintian --exclude=./usr/share/info \
            || die "could not unpack $deb"
    done
    [[ -x $sysroot/usr/bin/python$PY_VER ]] || die "python$PY_VER missing from the arm64 sysroot"
    SYSROOT_PKG_COUNT=${#debs[@]}
    apt-get "${opts[@]}" -q autoclean >/dev/null 2>&1 || true
}

# Emulated interpreter of the environment at $1 with a minimal, explicit environment.
run_aarch64() {
    local env_dir=$1; shift
    local -a vars=(PATH="$env_dir/venv/bin:$PATH" HOME="${HOME:-/root}" LANG=C.UTF-8 LC_ALL=C.UTF-8
        QEMU_LD_PREFIX="$env_dir/sysroot" QEMU_CPU="$QEMU_CPU_MODEL" VIRTUAL_ENV="$env_dir/venv"
        PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1)
    local name
    for name in TERM TMPDIR CI; do
        if [[ -n ${!name:-} ]]; then vars+=("$name=${!name}"); fi
    done
    env -i "${vars[@]}" "${EXTRA_ENV[@]}" "$env_dir/venv/bin/python" "$@"
}
EXTRA_ENV=()

build_env() {
    BUILD=$ENV_DIR.partial
    rm -rf "$BUILD"
    mkdir -p "$BUILD"
    local t=$(now)
    download_wheels "$REQ_RUNTIME"
    download_wheels "$REQ_RUNTIME" "$REQ_TEST"
    log "wheels downloaded ($(since "$t") s)"

    t=$(now)
    build_sysroot "$BUILD/sysroot"
    log "sysroot: $SYSROOT_PKG_COUNT arm64 packages unpacked ($(since "$t") s)"

    t=$(now)
    local venv=$BUILD/venv site=$BUILD/venv/lib/python$PY_VER/site-packages
    local tests=$BUILD/venv/lib/python$PY_VER/test-packages
    mkdir -p "$venv/bin" "$site" "$tests"
    ln -s "../../sysroot/usr/bin/python$PY_VER" "$venv/bin/python"
    ln -s python "$venv/bin/python3"; ln -s python "$venv/bin/python$PY_VER"
    local full_version
    full_version=$(dpkg-deb -f "$CACHE/apt/arm64/cache/archives/"python${PY_VER}_*_arm64.deb Version | sed 's/-.*//' | sort -V | tail -1)
    printf '%s\n' "home = $SYSROOT/usr/bin" "include-system-site-packages = false" \
        "version = $full_version" >"$venv/pyvenv.cfg"
    install_wheels "$site" "$REQ_RUNTIME"
    install_wheels "$tests" "$REQ_TEST"
    echo "$VENV/lib/python$PY_VER/test-packages" >"$site/zz-edge-yolo-test-packages.pth"
    # Console scripts: move them beside python and point their shebangs at the aarch64 interpreter.
    local dir script
    for dir in "$site/bin" "$tests/bin"; do
        [[ -d $dir ]] || continue
        for script in "$dir"/*; do
            sed -i "1s|^#!.*python.*|#!$VENV/bin/python|" "$script"
            mv -f "$script" "$venv/bin/"
        done
        rmdir "$dir"
    done
    log "wheels installed ($(since "$t") s)"

    t=$(now)
    # Bytecode for the stdlib and all wheels, recorded under the final path. Python 3.11's magic
    # number is the same on every architecture, so a host 3.11 can write it.
    local -a compile=(-m compileall -q -j 0 -s "$BUILD" -p "$ENV_DIR"
                      -x '/(lib2to3/tests|test|tests)/(data|bad)' "$BUILD/sysroot/usr/lib/python$PY_VER" "$site" "$tests")
    local errors=$BUILD/compileall.log
    if [[ $("$HOST_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') == "$PY_VER" ]]; then
        "$HOST_PYTHON" "${compile[@]}" >"$errors" 2>&1 || true
    else
        mv -T "$BUILD" "$ENV_DIR"   # the emulated interpreter only works at its final path
        run_aarch64 "$ENV_DIR" "${compile[@]//$BUILD/$ENV_DIR}" >"$ENV_DIR/${errors##*/}" 2>&1 || true
        mv -T "$ENV_DIR" "$BUILD"
    fi
    log "byte-compiled ($(since "$t") s; $(grep -c '^\*\*\*' "$errors" || true) files failed, see ${errors/#$BUILD/$ENV_DIR})"

    mv -T "$BUILD" "$ENV_DIR"
    t=$(now)
    if ! run_aarch64 "$ENV_DIR" "$SMOKE"; then
        rm -rf "$ENV_DIR"
        die "the new aarch64 environment failed its smoke test (tests/aarch64/smoke.py)"
    fi
    log "smoke test passed ($(since "$t") s)"
    since "$t_prepare" >"$ENV_DIR/.complete.tmp" && mv -f "$ENV_DIR/.complete.tmp" "$ENV_DIR/.complete"
}

prepare_qemu
register_binfmt
if (( rebuild )); then rm -rf "$ENV_DIR"; fi
# Only a tree stamped complete after its smoke test is reused; anything else is rebuilt.
if [[ -f $ENV_DIR/.complete ]]; then
    state=warm
else
    state=cold
    for stale in "$CACHE"/env-*; do rm -rf "$stale"; done
    build_env
fi
prepare_s=$(since "$t_prepare")
flock -s 9

log "qemu: $("$QEMU" --version | head -1) (cpu $QEMU_CPU_MODEL)"
if [[ $state == cold ]]; then
    log "prepare: cold, ${prepare_s} s"
else
    log "prepare: warm, ${prepare_s} s (cold build of this environment took $(cat "$ENV_DIR/.complete") s)"
fi
log "runtime site-packages: $(du -sh "$SITE" | cut -f1) in $SITE; largest: $(
    du -sm "$SITE"/* | sort -rn | head -4 | awk '{ n = $2; sub(/.*\//, "", n); printf "%s%s %d MB", sep, n, $1; sep = ", " }')"
log "test tools: $(du -sh "$VENV/lib/python$PY_VER/test-packages" | cut -f1); python sysroot: $(du -sh "$SYSROOT" | cut -f1)"
(( prepare_only )) && exit 0

# --- test run ---------------------------------------------------------------------------------
abs_path() { [[ $1 == /* ]] && echo "$1" || echo "$PWD/$1"; }
if [[ -z ${EDGE_YOLO_DATA:-} ]]; then
    if [[ -d $REPO/../shared ]]; then export EDGE_YOLO_DATA=$(cd "$REPO/../shared" && pwd -P)
    elif [[ -d /work/shared ]]; then export EDGE_YOLO_DATA=/work/shared
    else log "EDGE_YOLO_DATA not set and no shared/ beside the clone"
    fi
fi
for name in $(compgen -e | grep '^EDGE_YOLO_' || true); do
    value=${!name}
    case $name in
        EDGE_YOLO_TEST_MODELS|EDGE_YOLO_DATA)
            [[ -d $value ]] || die "$name is not a directory: $value"; value=$(abs_path "$value") ;;
        EDGE_YOLO_X86_REFERENCE)
            [[ -f $value ]] || die "$name is not a file: $value"; value=$(abs_path "$value") ;;
    esac
    EXTRA_ENV+=("$name=$value")
done
EXTRA_ENV+=("PYTHONPATH=$REPO" "EDGE_YOLO_EMULATION=qemu-user")

read -r -d '' LAUNCH <<'EOF' || true
import importlib.util, platform, sys
machine = platform.machine()
print(f"platform.machine(): {machine} (Python {platform.python_version()}, {sys.prefix})", flush=True)
if machine != "aarch64":
    print(f"run.sh: error: the interpreter reports {machine}, not aarch64", file=sys.stderr)
    sys.exit(3)
present = [name for name in ("torch", "tensorflow") if importlib.util.find_spec(name)]
if present:
    print(f"run.sh: error: the aarch64 environment must not contain {', '.join(present)}", file=sys.stderr)
    sys.exit(3)
import pytest
sys.exit(pytest.main(sys.argv[1:]))
EOF

cd "$REPO"
set +e
run_aarch64 "$ENV_DIR" -c "$LAUNCH" -p no:cacheprovider "$@"
rc=$?
set -e
log "pytest exit status: $rc"
exit "$rc"
