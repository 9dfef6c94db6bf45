"""The TOML config file: names checked against the parser, types converted, one-line errors."""

from __future__ import annotations

import argparse
import io
import re
import tomllib
from pathlib import Path

import pytest

from edge.config import (EDGE_DETECT_VALIDATORS, MASK, InvalidSetting, add_config_arguments, apply_config,
                         format_settings, read_config)
from edge.errors import EdgeError

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "deploy" / "config.example.toml"


def edge_detect_like_parser() -> argparse.ArgumentParser:
    """The shape of edge-detect's options: required model, camera-or-source, numbers, lists, MQTT."""
    parser = argparse.ArgumentParser(prog="edge-detect")
    parser.add_argument("--model", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--iou", type=float, default=0.45)
    parser.add_argument("--classes", nargs="+", default=None)
    parser.add_argument("--max-det", type=int, default=300)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--camera", default=None)
    source.add_argument("--source", default=None)
    parser.add_argument("--max-fps", type=float, default=None)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--save", metavar="DIR", default=None)
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("--annotate", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--mqtt", metavar="URL", default=None)
    parser.add_argument("--mqtt-username", default=None)
    parser.add_argument("--mqtt-password", default=None)
    parser.add_argument("--mqtt-password-file", default=None)
    parser.add_argument("--mqtt-prefix", default="edge-yolo")
    add_config_arguments(parser)
    return parser


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "m.tflite"
    path.write_bytes(b"not read by the config")
    return path


@pytest.fixture
def write_config(tmp_path, model):
    def write(body: str, with_model: bool = True) -> Path:
        path = tmp_path / "config.toml"
        path.write_text((f'model = "{model}"\n' if with_model else "") + body)
        return path
    return write


def load(path: Path, *argv: str) -> argparse.Namespace:
    return apply_config(edge_detect_like_parser(), ["--config", str(path), *argv], EDGE_DETECT_VALIDATORS)


# (config body after `model = ...`, the error after "config <path>: ")
BAD_CONFIGS = [
    ('camera = 0\nmax-fsp = 5\n', "key 'max-fsp': unknown setting; did you mean 'max-fps' or 'max-frames'?"),
    ('camera = 0\nconf = "high"\n', """key 'conf': expected a number, received "high\""""),
    ('camera = 0\nthreads = true\n', "key 'threads': expected an integer, received true"),
    ('camera = 0\nthreads = 2.5\n', "key 'threads': expected an integer, received 2.5"),
    ('camera = 0\nmax-fps = -2\n', "key 'max-fps': must be greater than 0, received -2.0"),
    ('camera = 0\nconf = 1.5\n', "key 'conf': must be between 0.0 and 1.0, received 1.5"),
    ('camera = 0\nthreads = 0\n', "key 'threads': must be at least 1, received 0"),
    ('camera = 0\ndevice = "gpu"\n',
     "key 'device': unknown device 'gpu'; use cpu, edgetpu, edgetpu:usb, edgetpu:usb:N, edgetpu:pci or edgetpu:pci:N"),
    ('camera = 0\nlog_format = "xml"\n', """key 'log_format': received "xml"; allowed: "text", "json\""""),
    ('camera = 0\nannotate = "yes"\n', """key 'annotate': expected true or false, received "yes\""""),
    ('camera = 0\nclasses = "person"\n', """key 'classes': expected an array, received "person"; write ["person"]"""),
    ('camera = 0\nclasses = []\n', "key 'classes': expected at least one value, received an empty array"),
    ('camera = 0\nmax-fps = 5\nmax_fps = 6\n', "key 'max_fps': sets --max-fps again (already set by 'max-fps')"),
    ('camera = 0\nsource = "a.mp4"\n', "key 'source': cannot be combined with 'camera'; set only one of them"),
    ('camera = 0\nconfig = "other.toml"\n', "key 'config': is not a setting; give it on the command line"),
    ('camera = 0\nhelp = true\n', "key 'help': is not a setting; give it on the command line"),
    ('camera = 0\nresolution = 640\n', "key 'resolution': unknown setting; the settings are the long options of `edge-detect --help`"),
    ('camera = 0\n[mqqt]\nurl = "mqtt://broker"\n', "key 'mqqt': unknown table; did you mean 'mqtt'?"),
    ('camera = 0\n[mqtt]\nusrname = "cam"\n', "key 'mqtt.usrname': unknown setting; did you mean 'mqtt.username'?"),
    ('camera = 0\n[mqtt]\nurl = "mqtt://broker"\nmax-fps = 5\n',
     "key 'mqtt.max-fps': unknown setting in [mqtt]; 'max-fps' goes at the top, before any [table] line"),
    ('camera = 0\n[mqtt.tls]\nca = "/etc/ssl/ca.pem"\n', "key 'mqtt.tls': tables hold settings, not other tables"),
    ('camera = 0\n[mqtt]\npassword = 12.5\n', "key 'mqtt.password': expected a string, received a number (value hidden)"),
    ('camera = 0\nconf = 1979-05-27\n', "key 'conf': expected a number, received a date or time"),
]


@pytest.mark.parametrize("body, error", BAD_CONFIGS, ids=[e.split(":")[0] + "-" + str(i) for i, (_, e) in enumerate(BAD_CONFIGS)])
def test_a_bad_config_is_one_line_naming_the_key(write_config, body, error):
    path = write_config(body)
    with pytest.raises(EdgeError) as caught:
        load(path)
    assert str(caught.value) == f"config {path}: {error}"
    assert "\n" not in str(caught.value)


def test_a_missing_model_file_names_the_key(write_config, tmp_path):
    path = write_config(f'model = "{tmp_path}/gone.tflite"\ncamera = 0\n', with_model=False)
    with pytest.raises(EdgeError, match=re.escape(f"config {path}: key 'model': file not found: {tmp_path}/gone.tflite")):
        load(path)


@pytest.mark.parametrize("content, error", [
    (None, "file not found"),
    ("model = \n", "not valid TOML: Invalid value (at line 1, column 9)"),
    (b"model = \"\xff\"\n", "not UTF-8 text"),
])
def test_an_unreadable_file_is_one_line(tmp_path, content, error):
    path = tmp_path / "config.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(EdgeError) as caught:
        load(path)
    assert str(caught.value) == f"config {path}: {error}"


def test_a_secret_never_appears_in_an_error(write_config):
    path = write_config('camera = 0\n[mqtt]\npassword = ["hunter2"]\n')
    with pytest.raises(EdgeError) as caught:
        load(path)
    assert "hunter2" not in str(caught.value)
    assert str(caught.value).endswith("key 'mqtt.password': expected a string, received an array (value hidden)")


def test_the_file_supplies_required_options_and_the_command_line_overrides_it(write_config, model):
    path = write_config('camera = "0"\nmax-fps = 5\nclasses = [0, "car"]\n[mqtt]\nurl = "mqtt://broker:1883"\nusername = "cam"\n')
    args = load(path)
    assert (args.model, args.camera, args.source, args.max_fps) == (str(model), "0", None, 5.0)
    assert args.classes == ["0", "car"]   # as `--classes 0 car` gives them
    assert (args.mqtt, args.mqtt_username, args.conf) == ("mqtt://broker:1883", "cam", 0.25)

    args = load(path, "--max-fps", "2", "--mqtt-username", "other", "--conf", "0.5")
    assert (args.max_fps, args.mqtt_username, args.conf) == (2.0, "other", 0.5)


def test_a_source_on_the_command_line_replaces_the_files_camera(write_config):
    args = load(write_config('camera = "0"\n'), "--source", "clip.mp4")
    assert (args.source, args.camera) == ("clip.mp4", None)


def test_a_validator_blames_the_command_line_when_the_value_came_from_there(write_config):
    with pytest.raises(EdgeError) as caught:
        load(write_config('camera = 0\nmax-fps = 5\n'), "--max-fps", "0")
    assert str(caught.value) == "argument --max-fps: must be greater than 0, received 0.0"


def test_conf_on_the_command_line_is_not_taken_for_config(write_config):
    args = load(write_config('camera = 0\n'), "--conf", "0.4")
    assert args.conf == 0.4


def test_without_config_the_parser_works_as_before(model):
    args = apply_config(edge_detect_like_parser(), ["--model", str(model), "--source", "a.mp4"], EDGE_DETECT_VALIDATORS)
    assert (args.model, args.source, args.config, args.conf) == (str(model), "a.mp4", None, 0.25)


def test_switches_follow_their_flag(write_config):
    assert load(write_config('camera = 0\nannotate = true\n')).annotate is True
    assert load(write_config('camera = 0\nno-annotate = true\n')).annotate is False
    assert load(write_config('camera = 0\nannotate = true\n'), "--no-annotate").annotate is False


def test_a_custom_validator_blames_the_config_key(write_config):
    def needs_mqtt_user(args):
        if args.mqtt and not args.mqtt_username:
            raise InvalidSetting("mqtt", "needs [mqtt] username as well")
    path = write_config('camera = 0\n[mqtt]\nurl = "mqtt://broker"\n')
    with pytest.raises(EdgeError) as caught:
        apply_config(edge_detect_like_parser(), ["--config", str(path)], [needs_mqtt_user])
    assert str(caught.value) == f"config {path}: key 'mqtt.url': needs [mqtt] username as well"


def test_with_a_config_argparse_errors_are_one_line_too(write_config):
    path = write_config("conf = 0.3\n")
    with pytest.raises(EdgeError) as caught:
        load(path)
    assert str(caught.value) == (f"one of the arguments --camera --source is required "
                                 f"(set in config {path} or on the command line)")
    with pytest.raises(EdgeError, match="^argument --threads: invalid int value: 'many'$"):
        load(write_config("camera = 0\n"), "--threads", "many")


FULL_CONFIG = """\
device = "edgetpu:usb"
threads = 2
conf = 0.3
iou = 0.5
classes = ["person", "car"]
max-det = 50
camera = "/dev/video0"
max-fps = 7.5
max-frames = 1000
save = "/var/lib/edge-detect/frames"
log-format = "json"
annotate = true

[mqtt]
url = "mqtts://broker.local:8883"
username = "cam1"
prefix = "site/cam1"
"""


def check_config(path: Path, *argv: str) -> str:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        apply_config(edge_detect_like_parser(), ["--config", str(path), "--check-config", *argv], EDGE_DETECT_VALIDATORS, out=out)
    assert exited.value.code == 0
    return out.getvalue()


def test_check_config_prints_toml_that_reads_back_the_same(write_config, model, tmp_path):
    path = write_config(FULL_CONFIG)
    printed = check_config(path)
    assert tomllib.loads(printed) == tomllib.loads(f'model = "{model}"\n' + FULL_CONFIG)
    again = tmp_path / "again.toml"
    again.write_text(printed)
    assert vars(load(again)) == {**vars(load(path)), "config": str(again)}


def test_check_config_masks_secrets_and_marks_unset_settings(write_config):
    printed = check_config(write_config('camera = 0\n[mqtt]\npassword = "hunter2"\npassword-file = "/etc/pw"\n'))
    assert "hunter2" not in printed
    assert tomllib.loads(printed)["mqtt"]["password"] == MASK
    assert tomllib.loads(printed)["mqtt"]["password-file"] == "/etc/pw"   # where the secret is, not the secret
    assert "# threads =" in printed and "# source =" in printed


def test_check_config_reports_a_bad_config_like_any_run(write_config):
    with pytest.raises(EdgeError, match="key 'max-fps': must be greater than 0"):
        check_config(write_config("camera = 0\nmax-fps = 0\n"))


def test_format_settings_without_a_file(model):
    parser = edge_detect_like_parser()
    args = parser.parse_args(["--model", str(model), "--source", "x.jpg"])
    assert tomllib.loads(format_settings(parser, args))["source"] == "x.jpg"


# --- deploy/config.example.toml -----------------------------------------------------------------

def example_keys(text: str) -> list[tuple[str | None, str]]:
    """(table, key) of every setting in the example, commented-out ones included."""
    keys, table = [], None
    for line in text.splitlines():
        if m := re.fullmatch(r"\[([A-Za-z0-9_-]+)\]", line.strip()):
            table = m.group(1)
        elif m := re.fullmatch(r"#? ?([A-Za-z0-9_-]+) = .+", line):
            keys.append((table, m.group(1)))
    return keys


def uncommented_example(text: str, drop: set[str]) -> str:
    lines = []
    for line in text.splitlines():
        m = re.fullmatch(r"# ?([A-Za-z0-9_-]+) = .+", line)
        if m and m.group(1) not in drop:
            line = line.lstrip("# ")
        lines.append(line)
    return "\n".join(lines) + "\n"


def edge_detect_parser() -> argparse.ArgumentParser:
    """edge-detect's own parser; the example is checked against it once it reads config files."""
    cli = pytest.importorskip("edge.cli")
    make_parser = getattr(cli, "detect_parser", None)
    if make_parser is None:
        pytest.skip("edge.cli has no detect_parser()")
    parser = make_parser()
    if not any(a.dest == "config" for a in parser._actions):
        pytest.skip("edge-detect does not read a config file yet (no add_config_arguments in edge.cli)")
    return parser


def test_every_example_setting_is_valid_once_uncommented(tmp_path, model):
    text = EXAMPLE.read_text()
    body = uncommented_example(text, drop={"source"}).replace("/opt/edge-yolo/models/MODEL.tflite", str(model))
    path = tmp_path / "config.toml"
    path.write_text(body)
    settings = read_config(edge_detect_parser(), path)
    assert len(settings) == len(example_keys(text)) - 1


def test_the_example_documents_exactly_the_options_of_edge_detect():
    parser = edge_detect_parser()
    documented = set()
    for table, key in example_keys(EXAMPLE.read_text()):
        name = f"{table}-{key}" if table else key
        documented.add("mqtt" if name == "mqtt-url" else name)
    options = {opt[2:] for a in parser._actions for opt in a.option_strings[:1]
               if opt.startswith("--") and a.dest not in ("help", "config", "check_config")}
    assert documented == options, f"undocumented: {sorted(options - documented)}; not options: {sorted(documented - options)}"
