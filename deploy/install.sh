#!/usr/bin/env bash
# Install edge-detect as a systemd service on Raspberry Pi OS bookworm, 64-bit (aarch64).
#
#   sudo deploy/install.sh --model models/yolov5n/yolov5n_320_int8.tflite --camera picam
#   sudo deploy/install.sh                        # again: updates the runtime, keeps config and model
#   sudo deploy/install.sh --uninstall [--purge]
#
# What goes where:
#   /opt/edge-yolo/venv                  virtualenv: this package + deploy/requirements-pi.txt only
#                                        (system site packages visible, for apt's python3-picamera2)
#   /opt/edge-yolo/models/NAME.tflite    the model (and its sidecar NAME.json, if any)
#   /opt/edge-yolo/share/                config.example.toml, for reference
#   /etc/edge-detect/config.toml         settings; written once, never overwritten
#   /etc/edge-detect/mqtt-password       optional, yours to create (chmod 600)
#   /etc/systemd/system/edge-detect.service (+ edge-detect.service.d/install-groups.conf)
#   /var/lib/edge-detect                 state, created by systemd (StateDirectory=)
#
# Options:
#   --model PATH         model to install; required when no config exists yet
#   --camera CAM         camera for a new config: picam, picam:1, 0, /dev/video0 (edge-detect --camera)
#   --source SRC         or a stream URL or file instead (edge-detect --source); without either,
#                        set one in /etc/edge-detect/config.toml before the service can start
#   --uninstall          stop and remove the service, the virtualenv and the models; keep /etc/edge-detect
#   --purge              with --uninstall: also remove /etc/edge-detect and /var/lib/edge-detect
#   --dry-run            print every action, change nothing
#   --prefix DIR         lay the files out under DIR instead of / (inspection, images, tests): file
#                        contents still name the final paths, systemctl is printed, not run
#   --no-venv            skip the virtualenv
#   --wheelhouse DIR     install wheels from DIR only (no network); it must hold this package's wheel
#   --requirements FILE  pinned runtime set (default: deploy/requirements-pi.txt)
#   --force              install on a machine that is not aarch64
# Runs again safely: unchanged files are not rewritten, and the service restarts only if
# something it uses changed. Exit status 2 on a usage or environment error.
set -euo pipefail

readonly PROG=install.sh
readonly SERVICE=edge-detect.service
readonly OPT=/opt/edge-yolo
readonly VENV=$OPT/venv
readonly MODELS=$OPT/models
readonly SHARE=$OPT/share
readonly ETC=/etc/edge-detect
readonly CONFIG=$ETC/config.toml
readonly PASSWORD=$ETC/mqtt-password
readonly UNIT=/etc/systemd/system/$SERVICE
readonly DROPIN_DIR=/etc/systemd/system/$SERVICE.d
readonly DROPIN=$DROPIN_DIR/install-groups.conf
readonly STATE_DIRS=(/var/lib/edge-detect /var/lib/private/edge-detect)
# Groups owning accelerator devices that only exist once their driver is installed (Coral PCIe).
readonly OPTIONAL_GROUPS=(apex)
readonly FORBIDDEN_PACKAGES=(torch tensorflow)

die() { echo "$PROG: error: $*" >&2; exit 2; }
warn() { echo "$PROG: warning: $*" >&2; }
say() { echo "$PROG: $*"; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
invocation="$0 $*"
model="" prefix="" input_key="" input_value="" wheelhouse="" requirements=$repo/deploy/requirements-pi.txt
dry_run=0 uninstall=0 purge=0 force=0 no_venv=0
python=${PYTHON:-python3}

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }
while (($#)); do
    case $1 in
        --model) need_value "$@"; model=$2; shift 2 ;;
        --camera|--source)
            need_value "$@"
            [[ -z $input_key ]] || die "give only one of --camera and --source"
            input_key=${1#--}; input_value=$2; shift 2 ;;
        --prefix) need_value "$@"; prefix=$2; shift 2 ;;
        --wheelhouse) need_value "$@"; wheelhouse=$2; shift 2 ;;
        --requirements) need_value "$@"; requirements=$2; shift 2 ;;
        --model=*|--camera=*|--source=*|--prefix=*|--wheelhouse=*|--requirements=*)
            set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
        --uninstall) uninstall=1; shift ;;
        --purge) purge=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        --no-venv) no_venv=1; shift ;;
        --force) force=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d; s/^# \{0,1\}//; p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

# --- checks ----------------------------------------------------------------------------------
((purge == 0 || uninstall == 1)) || die "--purge only goes with --uninstall"
if [[ -n $prefix ]]; then
    [[ $prefix != / ]] || die "--prefix / is the default; leave it out to install into /"
    if ((dry_run == 0)); then mkdir -p -- "$prefix" 2>/dev/null || die "cannot create --prefix $prefix"; fi
    prefix=$(realpath -m -- "$prefix")
fi
root=$prefix   # every path below is "$root$PATH"

if [[ -z $prefix && $dry_run == 0 && $EUID -ne 0 ]]; then
    die "must run as root: sudo $invocation"
fi
if ((uninstall == 0)); then
    arch=$(uname -m)
    [[ $arch == aarch64 || $force == 1 ]] \
        || die "this machine is $arch, not aarch64 (64-bit Raspberry Pi OS); --force installs anyway"
    codename=$(sed -n "s/^VERSION_CODENAME=//p" /etc/os-release 2>/dev/null | tr -d "\"'") || codename=""
    [[ $codename == bookworm ]] || warn "made for Raspberry Pi OS bookworm; this is '${codename:-unknown}'"
    # the value goes into a TOML string and a sed replacement
    [[ ! $input_value =~ [\"\\|] && $input_value != *$'\n'* ]] || die "--$input_key must not contain \", \\, | or a newline"
    if [[ -n $model ]]; then
        [[ -f $model ]] || die "model file not found: $model"
        [[ $(basename -- "$model") =~ ^[A-Za-z0-9._+-]+\.tflite$ ]] \
            || die "model file name must end in .tflite and use only letters, digits and ._+-: $(basename -- "$model")"
    elif [[ ! -e $root$CONFIG ]]; then
        die "--model PATH is required for a first install (the .tflite written by edge-convert export)"
    fi
    if ((no_venv == 0)); then
        [[ -r $requirements ]] || die "requirements file not found: $requirements"
        [[ -z $wheelhouse || -d $wheelhouse ]] || die "--wheelhouse $wheelhouse is not a folder"
        "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
            || die "$python is missing or older than 3.11 (set PYTHON=/path/to/python3.11)"
        "$python" -c 'import venv, ensurepip' 2>/dev/null \
            || die "$python cannot create virtualenvs: apt install python3-venv"
    fi
fi
if [[ -z $prefix && $dry_run == 0 ]]; then
    [[ -d /run/systemd/system ]] || die "systemd is not running here; use --prefix DIR to lay the files out only"
fi

# --- actions: printed, and run unless --dry-run ----------------------------------------------
changed=0
run() {
    echo "+ $*"
    ((dry_run)) || "$@"
}
# Commands that need the running system: printed only under --prefix.
system() {
    if [[ -n $prefix ]]; then echo "+ $* (skipped: --prefix)"; else run "$@"; fi
}
# put SRC DEST MODE: copy when missing or different.
put() {
    if [[ -f $2 ]] && cmp -s -- "$1" "$2"; then return; fi
    run install -m "$3" -- "$1" "$2"
    changed=1
}
# write DEST MODE DESCRIPTION < content: like put, from stdin.
write() {
    local tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $1 ]] && cmp -s -- "$tmp" "$1"; then rm -f -- "$tmp"; return; fi
    echo "+ write $1 ($3)"
    ((dry_run)) || install -m "$2" -- "$tmp" "$1"
    rm -f -- "$tmp"
    changed=1
}
remove() {
    local path
    for path; do
        if [[ -e $path || -L $path ]]; then run rm -rf -- "$path"; fi
    done
}

uninstall() {
    if [[ -f $root$UNIT ]]; then
        system systemctl disable --now "$SERVICE"
    fi
    remove "$root$UNIT" "$root$DROPIN"
    if [[ -d $root$DROPIN_DIR ]] && [[ -z $(ls -A -- "$root$DROPIN_DIR") ]]; then run rmdir -- "$root$DROPIN_DIR"; fi
    system systemctl daemon-reload
    remove "$root$OPT"
    if ((purge)); then
        remove "$root$ETC"
        for dir in "${STATE_DIRS[@]}"; do remove "$root$dir"; done
    elif [[ -d $root$ETC ]]; then
        say "kept $root$ETC (settings, password); --uninstall --purge removes it"
    fi
    say "uninstalled"
}

# Everything the virtualenv is built from: when unchanged, the virtualenv is left as it is.
venv_stamp() {
    {
        cat -- "$requirements" "$repo/pyproject.toml"
        find "$repo/edge" -type f \( -name '*.py' -o -name '*.json' \) -print0 | sort -z | xargs -0 cat --
        echo "wheelhouse=$wheelhouse system-site-packages"
    } | sha256sum | cut -c1-16
}

install_venv() {
    local venv=$root$VENV stamp
    stamp=$(venv_stamp)
    if [[ -x $venv/bin/python && -f $venv/.edge-yolo-stamp && $(cat -- "$venv/.edge-yolo-stamp") == "$stamp" ]]; then
        say "virtualenv $venv is up to date"
        return
    fi
    changed=1
    # System site packages: picamera2 and libcamera's bindings come from apt, not PyPI.
    [[ -x $venv/bin/python ]] || run "$python" -m venv --system-site-packages "$venv"
    local -a pip=("$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet)
    [[ -z $wheelhouse ]] || pip+=(--no-index --find-links "$wheelhouse")
    run "${pip[@]}" --requirement "$requirements"
    # The runtime's dependencies are pinned above; nothing unpinned comes with the package.
    if [[ -n $wheelhouse ]]; then
        local version
        version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -1)
        run "${pip[@]}" --no-deps --force-reinstall "edge-yolo==$version"
    else
        run "${pip[@]}" --no-deps --force-reinstall "$repo"
    fi
    ((dry_run)) && return
    local present
    present=$("$venv/bin/python" -c 'import importlib.util, sys
print(" ".join(n for n in sys.argv[1:] if importlib.util.find_spec(n)))' "${FORBIDDEN_PACKAGES[@]}")
    [[ -z $present ]] || die "the runtime virtualenv must not contain $present; check $requirements"
    echo "$stamp" >"$venv/.edge-yolo-stamp"
}

install_model() {
    local name target
    name=$(basename -- "$model")
    target=$MODELS/$name
    put "$model" "$root$target" 0644
    local sidecar=${model%.tflite}.json
    [[ ! -f $sidecar ]] || put "$sidecar" "$root${target%.tflite}.json" 0644
    installed_model=$target
}

install_config() {
    put "$repo/deploy/config.example.toml" "$root$SHARE/config.example.toml" 0644
    if [[ ! -e $root$CONFIG ]]; then
        local -a edits=(-e "s|^model = .*|model = \"$installed_model\"|")
        [[ -z $input_key ]] || edits+=(-e "s|^# $input_key = .*|$input_key = \"${input_value//&/\\&}\"|")
        sed "${edits[@]}" "$repo/deploy/config.example.toml" \
            | write "$root$CONFIG" 0644 "settings from config.example.toml, model = $installed_model${input_key:+, $input_key = $input_value}"
        return
    fi
    say "keeping the existing $root$CONFIG"
    [[ -z $input_key ]] || warn "--$input_key only applies to a new config; set $input_key in $CONFIG yourself"
    local current
    current=$(sed -n 's/^model *= *"\(.*\)".*/\1/p' "$root$CONFIG" | head -1)
    if [[ -n $installed_model && $current != "$installed_model" ]]; then
        warn "$CONFIG uses model \"$current\"; to run the new one, set: model = \"$installed_model\""
    fi
    if grep -E '^[[:space:]]*[A-Za-z0-9_-]*(password|secret|token)[A-Za-z0-9_-]*[[:space:]]*=' "$root$CONFIG" \
        | grep -Ev '[-_]file[[:space:]]*=' >/dev/null \
        && [[ $(stat -c %a -- "$root$CONFIG") =~ [4-7]$ ]]; then
        # the service's dynamic user can only read the config if everyone can
        warn "$CONFIG holds a secret and every local user can read it: move the MQTT password to $PASSWORD (chmod 600)"
    fi
}

install_unit() {
    put "$repo/deploy/edge-detect.service" "$root$UNIT" 0644
    local groups=() group
    for group in "${OPTIONAL_GROUPS[@]}"; do
        if getent group "$group" >/dev/null; then groups+=("$group"); fi
    done
    if ((${#groups[@]})); then
        [[ -d $root$DROPIN_DIR ]] || run install -d -m 0755 "$root$DROPIN_DIR"
        printf '# Written by deploy/install.sh: device groups present on this machine.\n[Service]\nSupplementaryGroups=%s\n' \
            "${groups[*]}" | write "$root$DROPIN" 0644 "adds groups ${groups[*]}"
    else
        remove "$root$DROPIN"
    fi
    if [[ -f $root$PASSWORD ]] && [[ $(stat -c %a -- "$root$PASSWORD") =~ [1-7]$ ]]; then
        warn "$PASSWORD is readable by every user: chmod 600 $PASSWORD"
    fi
}

start_service() {
    local was_active=0
    if [[ -z $prefix ]] && systemctl is-active --quiet "$SERVICE"; then was_active=1; fi
    system systemctl daemon-reload
    if [[ -z $prefix && $dry_run == 0 && -x $VENV/bin/edge-detect ]]; then
        local problem
        if ! problem=$("$VENV/bin/edge-detect" --config "$CONFIG" --check-config 2>&1 >/dev/null); then
            run systemctl enable "$SERVICE"
            echo "$problem" >&2
            die "installed but not started: fix $CONFIG, check it with '$VENV/bin/edge-detect --config $CONFIG --check-config', then: systemctl start edge-detect"
        fi
    else
        local why=--dry-run
        [[ -z $prefix ]] || why=--prefix
        [[ -n $prefix || $dry_run == 1 ]] || why="no virtualenv"
        echo "+ $VENV/bin/edge-detect --config $CONFIG --check-config (skipped: $why)"
    fi
    system systemctl enable --now "$SERVICE"
    if ((was_active && changed)); then
        system systemctl restart "$SERVICE"
    fi
}

if ((dry_run)); then say "dry run: nothing is changed"; fi
if ((uninstall)); then
    uninstall
    exit 0
fi

installed_model=""
for dir in "$OPT" "$MODELS" "$SHARE" "$ETC" /etc/systemd/system; do
    [[ -d $root$dir ]] || run install -d -m 0755 "$root$dir"
done
if ((no_venv)); then say "virtualenv skipped (--no-venv)"; else install_venv; fi
if [[ -n $model ]]; then install_model; fi
install_config
install_unit
start_service
say "installed; status: systemctl status edge-detect; logs: journalctl -u edge-detect -f"
