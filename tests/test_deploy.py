"""deploy/: the systemd unit (verified and scored by systemd-analyze) and install.sh under --prefix.

Host-only: needs bash and systemd-analyze (tests/run.sh installs the systemd package), not a
running systemd.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = REPO_ROOT / "deploy"
UNIT = DEPLOY / "edge-detect.service"
INSTALL = DEPLOY / "install.sh"
# `systemd-analyze security --offline=yes` on deploy/edge-detect.service: 1.5 with systemd 252.
# What is left is what the job needs: network, camera and accelerator devices, their groups.
MAX_EXPOSURE = 1.5
MODEL_NAME = "yolov5n_320_int8.tflite"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt-get install systemd)")


def run_install(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHON": sys.executable, **(env or {})})
    if check and result.returncode != 0:
        pytest.fail(f"install.sh {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}", pytrace=False)
    return result


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "src" / MODEL_NAME
    path.parent.mkdir()
    path.write_bytes(b"TFL3 stand-in model")
    path.with_suffix(".json").write_text('{"format": "edge-yolo"}')
    return path


def tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every path under root: kind, mode and content hash; mtimes of files too, to catch rewrites."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(root))] = ("file", st.st_mode, hashlib.sha256(path.read_bytes()).hexdigest() + f"@{st.st_mtime_ns}")
        else:
            found[str(path.relative_to(root))] = ("dir" if path.is_dir() else "other", st.st_mode, "")
    return found


INSTALLED = [
    "etc/systemd/system/edge-detect.service",
    "etc/edge-detect/config.toml",
    f"opt/edge-yolo/models/{MODEL_NAME}",
    "opt/edge-yolo/models/yolov5n_320_int8.json",
    "opt/edge-yolo/share/config.example.toml",
]


# --- the unit ------------------------------------------------------------------------------------

@needs_systemd_analyze
def test_installed_unit_passes_systemd_analyze_verify(tmp_path, model):
    root = tmp_path / "root"
    # a getent that knows the Coral PCIe group, so the drop-in is written and verified too
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "getent").write_text('#!/bin/sh\n[ "$2" = apex ] && echo "apex:x:999:" || exec /usr/bin/getent "$@"\n')
    (fake_bin / "getent").chmod(0o755)
    run_install("--prefix", str(root), "--no-venv", "--force", "--model", str(model),
                env={"PATH": f"{fake_bin}:{os.environ['PATH']}"})
    assert (root / "etc/systemd/system/edge-detect.service.d/install-groups.conf").read_text().endswith("SupplementaryGroups=apex\n")

    # verify resolves ExecStart and the unit's dependencies inside --root
    executable = root / "opt/edge-yolo/venv/bin/edge-detect"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    system_units = Path("/lib/systemd/system")
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)

    result = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "edge-detect.service"],
                            capture_output=True, text=True, timeout=60)
    # verify exits 0 even for settings it ignores ("Failed to parse ..., ignoring"): demand silence
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd_analyze
def test_verify_catches_a_broken_setting(tmp_path):
    # the silence demanded above means something: a typo is reported
    broken = tmp_path / "edge-detect.service"
    broken.write_text(UNIT.read_text().replace("WatchdogSec=30", "WatchdogSec=30x").replace(
        "/opt/edge-yolo/venv/bin/edge-detect", "/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "WatchdogSec" in result.stderr or "30x" in result.stderr


@needs_systemd_analyze
def test_exposure_score_stays_within_the_committed_bound():
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for edge-detect\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_runs_edge_detect_under_the_watchdog_with_the_config():
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"] and s["WatchdogSec"] == ["30"]
    assert s["ExecStart"] == ["/opt/edge-yolo/venv/bin/edge-detect --config /etc/edge-detect/config.toml"]
    assert s["Restart"] == ["on-failure"] and s["StartLimitBurst"] and s["StartLimitIntervalSec"]
    # the password file is optional: SetCredential= is the fallback when it is missing
    assert s["LoadCredential"] == ["mqtt-password:/etc/edge-detect/mqtt-password"]
    assert [v.split(":", 1)[0] for v in s["SetCredential"]] == ["mqtt-password"]


# --- install.sh ----------------------------------------------------------------------------------

def test_prefix_install_lays_down_its_files_and_a_second_run_rewrites_nothing(tmp_path, model):
    root = tmp_path / "root"
    first = run_install("--prefix", str(root), "--no-venv", "--force", "--model", str(model), "--camera", "picam")
    for rel in INSTALLED:
        assert (root / rel).is_file(), f"{rel} missing; output:\n{first.stdout}"
    assert (root / f"opt/edge-yolo/models/{MODEL_NAME}").read_bytes() == model.read_bytes()
    assert (root / "etc/systemd/system/edge-detect.service").read_text() == UNIT.read_text()
    config = tomllib.loads((root / "etc/edge-detect/config.toml").read_text())
    assert config["model"] == f"/opt/edge-yolo/models/{MODEL_NAME}"   # the final path, not under --prefix
    assert config["camera"] == "picam"
    # edge-detect reads what the installer wrote (the model path is checked when the service starts)
    from edge.settings import DETECT_SECTIONS
    from edge.settings.entries import entries_of
    from edge.settings.toml_file import FileReader
    reader = FileReader(entries_of(DETECT_SECTIONS), root / "etc/edge-detect/config.toml", "edge-detect")
    assert {shown for _, shown in reader.read().values()} == {"model", "camera"}
    assert "systemctl enable --now edge-detect.service (skipped: --prefix)" in first.stdout

    before = tree(root)
    second = run_install("--prefix", str(root), "--no-venv", "--force", "--model", str(model), "--camera", "picam")
    assert tree(root) == before
    assert "+ install" not in second.stdout and "+ write" not in second.stdout


def test_reinstall_keeps_the_users_config(tmp_path, model):
    root = tmp_path / "root"
    run_install("--prefix", str(root), "--no-venv", "--force", "--model", str(model))
    config = root / "etc/edge-detect/config.toml"
    mine = 'model = "/srv/mine.tflite"\ncamera = 0\n[mqtt]\npassword = "hunter2"\n'
    config.write_text(mine)
    result = run_install("--prefix", str(root), "--no-venv", "--force", "--model", str(model))
    assert config.read_text() == mine
    assert f'set: model = "/opt/edge-yolo/models/{MODEL_NAME}"' in result.stderr
    assert "holds a secret and every local user can read it" in result.stderr


def test_uninstall_removes_what_it_installed_and_keeps_the_config_unless_purged(tmp_path, model):
    root = tmp_path / "root"
    run_install("--prefix", str(root), "--no-venv", "--force", "--model", str(model))
    (root / "etc/edge-detect/mqtt-password").write_text("secret\n")

    run_install("--prefix", str(root), "--uninstall")
    assert not (root / "opt/edge-yolo").exists()
    assert not (root / "etc/systemd/system/edge-detect.service").exists()
    assert (root / "etc/edge-detect/config.toml").is_file() and (root / "etc/edge-detect/mqtt-password").is_file()

    run_install("--prefix", str(root), "--uninstall")   # again: nothing left to remove, no error
    run_install("--prefix", str(root), "--uninstall", "--purge")
    assert not (root / "etc/edge-detect").exists()


def test_dry_run_changes_nothing(tmp_path, model):
    fresh = tmp_path / "fresh"
    result = run_install("--prefix", str(fresh), "--dry-run", "--force", "--model", str(model))
    assert not fresh.exists()
    assert f"+ write {fresh}/etc/edge-detect/config.toml" in result.stdout
    assert re.search(r"^\+ \S*python\S* -m venv --system-site-packages", result.stdout, re.M)

    root = tmp_path / "root"
    run_install("--prefix", str(root), "--no-venv", "--force", "--model", str(model))
    before = tree(root)
    for args in (["--dry-run", "--force", "--no-venv", "--model", str(model)], ["--dry-run", "--uninstall", "--purge"]):
        result = run_install("--prefix", str(root), *args)
        assert tree(root) == before
    assert f"+ rm -rf -- {root}/etc/edge-detect" in result.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_install_sh_passes_shellcheck():
    result = subprocess.run(["shellcheck", str(INSTALL)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_model_is_one_line(tmp_path):
    result = run_install("--prefix", str(tmp_path / "r"), "--no-venv", "--force", "--model", str(tmp_path / "nope.tflite"), check=False)
    assert one_error_line(result) == f"install.sh: error: model file not found: {tmp_path}/nope.tflite"
    result = run_install("--prefix", str(tmp_path / "r"), "--no-venv", "--force", check=False)
    assert one_error_line(result).startswith("install.sh: error: --model PATH is required for a first install")


@pytest.mark.skipif(platform.machine() == "aarch64", reason="the check only refuses other architectures")
def test_refuses_a_non_aarch64_machine_without_force(tmp_path, model):
    result = run_install("--prefix", str(tmp_path / "r"), "--no-venv", "--model", str(model), check=False)
    assert one_error_line(result) == (f"install.sh: error: this machine is {platform.machine()}, not aarch64 "
                                      "(64-bit Raspberry Pi OS); --force installs anyway")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to drop to nobody")
def test_refuses_to_install_into_the_system_without_root(model):
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             "bash", str(INSTALL), "--force", "--model", str(model)],
                            capture_output=True, text=True, timeout=60)
    assert one_error_line(result).startswith("install.sh: error: must run as root: sudo ")


def test_usage_errors_are_one_line(tmp_path):
    assert one_error_line(run_install("--purge", check=False)) == "install.sh: error: --purge only goes with --uninstall"
    assert one_error_line(run_install("--bogus", check=False)) == "install.sh: error: unknown option '--bogus' (see --help)"
    assert one_error_line(run_install("--model", check=False)) == "install.sh: error: --model needs a value"


def build_wheel(tmp_path: Path) -> Path:
    """This package's wheel, built offline from a copy of the sources (no build/ in the checkout)."""
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "edge", src / "edge", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "-w", str(wheels), str(src)], check=True, capture_output=True, timeout=120)
    return wheels


def test_prefix_install_builds_a_working_virtualenv_offline(tmp_path, model):
    if shutil.which("pip", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("this interpreter has no pip to build the wheel")
    wheels = build_wheel(tmp_path)
    # the pinned runtime set needs the network; the wheelhouse path is the same without it
    empty = tmp_path / "no-requirements.txt"
    empty.write_text("")
    root = tmp_path / "root"
    args = ["--prefix", str(root), "--force", "--model", str(model), "--wheelhouse", str(wheels), "--requirements", str(empty)]
    run_install(*args)
    venv = root / "opt/edge-yolo/venv"
    entry = venv / "bin/edge-detect"
    assert entry.stat().st_mode & stat.S_IXUSR
    assert entry.read_text().splitlines()[0] == f"#!{venv}/bin/python"
    # without the runtime wheels only the standard-library modules import; the package is the one built
    probe = subprocess.run([str(venv / "bin/python"), "-c",
                            "import importlib.metadata as m, edge.fields, edge.redact; print(m.version('edge-yolo'))"],
                           capture_output=True, text=True, timeout=60)
    assert (probe.returncode, probe.stdout.strip()) == (0, tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]), probe.stderr

    again = run_install(*args)
    assert "is up to date" in again.stdout
