"""The MQTT settings as a user gives them: flags and ``[mqtt]`` keys reaching the sink, or one line naming them."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.errors import EdgeError, InvalidSetting
from edge.settings import DETECT_SECTIONS, build_settings, format_settings
from edge.sinks.mqtt import PASSWORD_ENV, MqttSink, PublishMode
from edge.sinks.mqtt.spool import SPOOL_FILE
from tests.edge.mosquitto import free_port

NAMES = ("person", "bicycle", "car")


@pytest.fixture
def base(tmp_path) -> list[str]:
    model = tmp_path / "m.tflite"
    model.write_bytes(b"not read by the settings")
    return ["--model", str(model), "--camera", "0"]


@pytest.fixture
def no_secrets_env(monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


def build(*argv: str):
    return build_settings(DETECT_SECTIONS, [str(a) for a in argv], prog="edge-detect")


def test_password_from_a_config_file_reaches_the_sink(tmp_path, base, no_secrets_env):
    config = tmp_path / "edge.toml"
    config.write_text(f'[mqtt]\nurl = "mqtt://127.0.0.1:{free_port()}"\nusername = "cam"\npassword = "hunter2"\n')
    settings = build(*base, "--config", config, "--state-dir", tmp_path / "state")
    assert "hunter2" not in format_settings(settings, "edge-detect")
    sink = MqttSink(settings.mqtt, NAMES)
    try:
        assert sink.settings.resolve_password() == "hunter2"
    finally:
        sink.close()


def test_no_mqtt_url_no_sink(base):
    assert build(*base).mqtt is None


def test_an_mqtt_option_without_url_is_refused(base):
    with pytest.raises(EdgeError, match=r"^argument --mqtt-username: needs --mqtt URL"):
        build(*base, "--mqtt-username", "cam")


@pytest.mark.parametrize("argv, expected", [
    (["--publish", "often"], "argument --publish: 'often' is not a publish mode"),
    (["--device-id", "a/b"], "argument --device-id: 'a/b' cannot be used in an MQTT topic"),
    (["--spool-max", "0"], "argument --spool-max: must be between 1 and 10000000, received 0"),
    (["--mqtt-ca", "/ca.crt"], "argument --mqtt-ca: needs an mqtts:// URL"),
    (["--mqtt-password-file", "/pw"], "argument --mqtt-password-file: a broker password needs a user name"),
])
def test_bad_values_name_the_flag(argv, expected, tmp_path, base):
    with pytest.raises(EdgeError) as error:
        build(*base, "--mqtt", "mqtt://127.0.0.1", "--state-dir", tmp_path, *argv)
    assert str(error.value).startswith(expected)


def test_the_broker_url_is_never_echoed_with_its_credentials(base):
    with pytest.raises(EdgeError) as error:
        build(*base, "--mqtt", "htp://user:hunter2@broker:99999")
    assert "hunter2" not in str(error.value) and str(error.value).startswith("argument --mqtt: must not hold credentials")


@pytest.mark.parametrize("tokens, expected", [(["giraffe"], "unknown class 'giraffe'"), (["7"], "class id 7 is out of range")])
def test_snapshot_classes_are_checked_against_the_models_names(tmp_path, base, tokens, expected):
    settings = build(*base, "--mqtt", "mqtt://127.0.0.1", "--state-dir", tmp_path, "--snapshot", *tokens)
    with pytest.raises(InvalidSetting) as error:
        settings.mqtt.snapshot_classes(NAMES)
    assert error.value.field == "snapshot" and expected in error.value.message
    assert str(settings.blame("mqtt", "snapshot", error.value.message)).startswith(f"argument --snapshot: {expected}")


def test_flags_reach_the_sink(tmp_path, base, no_secrets_env):
    password_file = tmp_path / "pw"
    password_file.write_text("s3cret\n")
    port = free_port()  # nothing listens: the sink must start anyway
    settings = build(*base, "--mqtt", f"mqtt://127.0.0.1:{port}", "--device-id", "cam1", "--mqtt-prefix", "site/a",
                     "--publish", "interval:2", "--snapshot", "car", "0", "--mqtt-username", "cam",
                     "--mqtt-password-file", password_file, "--state-dir", tmp_path / "state", "--spool-max", "500")
    sink = MqttSink(settings.mqtt, NAMES)
    try:
        mqtt = sink.settings
        assert (mqtt.endpoint, mqtt.device_id, mqtt.prefix) == (("127.0.0.1", port, False), "cam1", "site/a")
        assert mqtt.publish_mode == PublishMode("interval", 2.0)
        assert mqtt.snapshot_classes(NAMES) == {0, 2}
        assert (mqtt.username, mqtt.resolve_password(), mqtt.spool_max) == ("cam", "s3cret", 500)
        assert sink.spool_path == Path(tmp_path / "state" / SPOOL_FILE)
    finally:
        sink.close()
