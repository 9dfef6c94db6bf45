"""The MQTT options of ``edge-detect`` and the sink they build."""

from __future__ import annotations

import argparse
import socket
from typing import Sequence

from edge.errors import EdgeError
from edge.model.metadata import class_ids_from
from edge.sinks.mqtt import MqttSink
from edge.sinks.mqtt.settings import (CREDENTIAL_NAME, DEFAULT_PORTS, DEFAULT_PREFIX, DEFAULT_SPOOL_MAX, DEFAULT_STATE_DIR,
                                      PASSWORD_ENV, PUBLISH_EVERY, PUBLISH_FORMS, SNAPSHOT_MIN_INTERVAL_S, STATE_ENV,
                                      MqttSettings)


_NEEDS_URL = [("device_id", "--device-id"), ("mqtt_prefix", "--mqtt-prefix"), ("publish", "--publish"),
              ("snapshot", "--snapshot"), ("mqtt_username", "--mqtt-username"),
              ("mqtt_password_file", "--mqtt-password-file"), ("mqtt_password", "[mqtt] password"), ("mqtt_ca", "--mqtt-ca"), ("mqtt_cert", "--mqtt-cert"),
              ("mqtt_key", "--mqtt-key"), ("state_dir", "--state-dir"), ("spool_max", "--spool-max")]


class _RefusedOnCommandLine(argparse.Action):
    """``--mqtt-password``: settable from a config file (``[mqtt] password``), refused on the command line.

    A password in argv shows in ``ps`` and shell history. Declaring the option also stops argparse from
    taking ``--mqtt-password SECRET`` as an abbreviation of ``--mqtt-password-file`` (and echoing SECRET
    in a file-not-found error).
    """

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is not accepted on the command line (it would show in ps and shell history); "
                     f"use [mqtt] password in the --config file, --mqtt-password-file, ${PASSWORD_ENV} "
                     f"or $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}")


def add_mqtt_arguments(parser: argparse.ArgumentParser) -> None:
    """The MQTT options of edge-detect. The password never comes from the command line (see MqttSettings)."""
    group = parser.add_argument_group("MQTT publishing (needs paho-mqtt)")
    group.add_argument("--mqtt", metavar="URL", default=None,
                       help=f"publish detections to this broker: mqtt://HOST[:{DEFAULT_PORTS['mqtt']}] or mqtts://HOST[:{DEFAULT_PORTS['mqtts']}]")
    group.add_argument("--device-id", metavar="ID", default=None, help="this device's topic level (default: the host name)")
    group.add_argument("--mqtt-prefix", metavar="PREFIX", default=None, help=f"topic prefix (default: {DEFAULT_PREFIX})")
    group.add_argument("--publish", metavar="MODE", default=None,
                       help=f"when to publish detections: {PUBLISH_FORMS}; 'change' when the count per label changes (default: every)")
    group.add_argument("--snapshot", metavar="CLASSES", nargs="+", default=None,
                       help=f"publish an annotated JPEG (at most one per {SNAPSHOT_MIN_INTERVAL_S:g} s) when one of these class ids or names is seen")
    group.add_argument("--mqtt-username", metavar="USER", default=None, help="broker user name")
    group.add_argument("--mqtt-password-file", metavar="PATH", default=None,
                       help=f"file holding the broker password (else [mqtt] password in the --config file, ${PASSWORD_ENV} "
                            f"or $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME})")
    group.add_argument("--mqtt-password", action=_RefusedOnCommandLine, default=None, help=argparse.SUPPRESS)
    group.add_argument("--mqtt-ca", metavar="PATH", default=None, help="CA certificate to verify an mqtts:// broker (default: the system's)")
    group.add_argument("--mqtt-cert", metavar="PATH", default=None, help="client certificate for mqtts://, with --mqtt-key")
    group.add_argument("--mqtt-key", metavar="PATH", default=None, help="client certificate key for mqtts://")
    group.add_argument("--state-dir", metavar="DIR", default=None,
                       help=f"where unsent messages and the sequence number are kept (default: ${STATE_ENV}, else {DEFAULT_STATE_DIR})")
    group.add_argument("--spool-max", metavar="N", type=int, default=None,
                       help=f"most unsent messages kept on disk; beyond it the oldest are dropped and counted (default: {DEFAULT_SPOOL_MAX})")


def mqtt_sink_from_args(args: argparse.Namespace, names: Sequence[str], model_name: str) -> MqttSink | None:
    """An MqttSink for the parsed options, or None without --mqtt; EdgeError naming the option on a bad value."""
    url = getattr(args, "mqtt", None)
    if not url:
        given = [option for dest, option in _NEEDS_URL if getattr(args, dest, None) is not None]
        if given:
            raise EdgeError(f"{given[0]} needs --mqtt URL: add --mqtt mqtt://HOST or drop {given[0]}")
        return None
    snapshot_classes: frozenset[int] = frozenset()
    if args.snapshot:
        try:
            snapshot_classes = frozenset(class_ids_from(args.snapshot, names))
        except EdgeError as exc:
            raise EdgeError(f"--snapshot: {exc}") from None
    settings = MqttSettings(
        url=url,
        prefix=args.mqtt_prefix if args.mqtt_prefix is not None else DEFAULT_PREFIX,
        device_id=args.device_id if args.device_id is not None else socket.gethostname(),
        publish=args.publish if args.publish is not None else PUBLISH_EVERY,
        snapshot_classes=snapshot_classes,
        username=args.mqtt_username,
        password=getattr(args, "mqtt_password", None),
        password_file=args.mqtt_password_file,
        tls_ca=args.mqtt_ca,
        tls_cert=args.mqtt_cert,
        tls_key=args.mqtt_key,
        state_dir=args.state_dir,
        spool_max=args.spool_max if args.spool_max is not None else DEFAULT_SPOOL_MAX,
        model=model_name,
    )
    return MqttSink(settings, names)
