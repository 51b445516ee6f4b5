"""sdnotify over a real AF_UNIX datagram socket, as systemd's NOTIFY_SOCKET."""
from __future__ import annotations

import socket

from eqt_monitor.live.sdnotify import Notifier


def test_states_arrive_as_one_datagram_each_and_a_stalled_reader_never_blocks(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(path)
        notifier = Notifier(path)
        assert notifier.enabled
        assert notifier.notify("READY=1", "STATUS=monitoring 2 stations")
        assert systemd.recv(4096) == b"READY=1\nSTATUS=monitoring 2 stations"
        # nobody reads: the queue fills and notify reports failure instead of blocking the caller
        sent = [notifier.notify("WATCHDOG=1") for _ in range(5000)]
        assert sent[0] and not sent[-1]
        notifier.close()
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier().enabled and not Notifier().notify("READY=1")


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Notifier("").watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier("").watchdog_interval() is None  # another process is watched
