"""sd_notify over a real datagram socket, and watchdog pacing."""

from __future__ import annotations

import logging
import os

import pytest
from notify_socket import abstract_notify_socket, notify_socket  # noqa: F401  (fixtures)

from edge.service.sdnotify import Notifier, WatchdogPacer


@pytest.mark.parametrize("listener_fixture", ["notify_socket", "abstract_notify_socket"])
def test_lifecycle_messages_arrive_in_order_from_this_process(listener_fixture, request):
    listener = request.getfixturevalue(listener_fixture)
    notifier = Notifier(listener.env)

    assert notifier.ready(status="model loaded, camera open")
    assert notifier.watchdog()
    assert notifier.status("12.5 fps, 100 frames\nsecond line")
    assert notifier.stopping()
    notifier.close()

    messages = [listener.receive() for _ in range(4)]
    assert [m.raw for m in messages] == [
        b"READY=1\nSTATUS=model loaded, camera open",
        b"WATCHDOG=1",
        b"STATUS=12.5 fps, 100 frames second line",   # a newline would start a new field
        b"STOPPING=1",
    ]
    assert {m.pid for m in messages} <= {os.getpid(), None}   # None: the kernel sent no credentials


def test_without_notify_socket_every_call_is_a_quiet_no_op(caplog):
    notifier = Notifier({})
    pacer = WatchdogPacer(notifier, {})
    with caplog.at_level(logging.DEBUG):
        results = [notifier.ready(), notifier.watchdog(), notifier.status("x"), notifier.stopping(), pacer.beat()]
    assert results == [False] * 5
    assert not notifier.enabled and not pacer.enabled
    assert caplog.records == []


def test_a_dead_socket_is_logged_once_and_never_raises(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="edge.service.sdnotify"):
        results = [notifier.watchdog() for _ in range(3)] + [notifier.ready(), notifier.stopping()]
    assert results == [False] * 5
    assert len(caplog.records) == 1
    assert "nobody-listens" in caplog.records[0].getMessage()


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_pings_at_most_every_half_interval(notify_socket):  # noqa: F811
    clock = FakeClock()
    env = {**notify_socket.env, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    pacer = WatchdogPacer(Notifier(env), env, clock=clock)
    assert pacer.enabled and pacer.period_s == 15.0

    sent = []
    for step_s in [0, 1, 13, 0.5, 0.5, 14.9, 0.2, 30]:   # frames at t = 0, 1, 14, 14.5, 15, 29.9, 30.1, 60.1
        clock.now += step_s
        sent.append(pacer.beat())
    assert sent == [True, False, False, False, True, False, True, True]
    assert [m.raw for m in notify_socket.drain()] == [b"WATCHDOG=1"] * 4


@pytest.mark.parametrize("env, reason", [
    ({}, "no WATCHDOG_USEC"),
    ({"WATCHDOG_USEC": "0"}, "zero interval"),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, "meant for another process"),
    ({"WATCHDOG_USEC": "thirty"}, "not a number"),
])
def test_pacer_stays_silent_when_the_watchdog_is_not_for_us(notify_socket, env, reason):  # noqa: F811
    pacer = WatchdogPacer(Notifier(notify_socket.env), env)
    assert not pacer.enabled, reason
    assert [pacer.beat() for _ in range(3)] == [False] * 3
    assert notify_socket.drain() == []
