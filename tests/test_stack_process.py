"""free_port: ports for servers the harness starts next, safe from outgoing connections."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from services.stack import process
from services.stack.process import free_port


def test_ports_come_from_below_the_ephemeral_range_and_are_never_repeated() -> None:
    floor = process._ephemeral_floor()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(process.LOWEST_PORT <= p < floor for p in ports), (floor, sorted(ports)[-5:])
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # nothing holds it


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        real_randrange, calls = process.random.randrange, []

        def pick(low: int, high: int) -> int:  # the busy port first, then real picks
            calls.append(low)
            return taken if len(calls) == 1 else real_randrange(low, high)

        monkeypatch.setattr(process.random, "randrange", pick)
        monkeypatch.setattr(process, "_ephemeral_floor", lambda: 65535)
        monkeypatch.setattr(process, "_handed_out", set())
        assert free_port() != taken and len(calls) >= 2


def test_without_room_below_the_ephemeral_range_the_kernel_picks(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("1024\t65535\n")
    monkeypatch.setattr(process, "EPHEMERAL_RANGE_FILE", range_file)
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
