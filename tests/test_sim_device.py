"""End to end: host → pyserial → pty → Verilated SoC, through the same code path as a board.

Tests taking the `dev` fixture run against every back end: the simulated device and the emulator."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tensornic
from tensornic.rtl import memory_map as mm
from tensornic.sim.device import SIM_CONFIG


@pytest.fixture(scope="module", params=["sim", "emulator"])
def dev(request):
    with tensornic.open(request.param) as device:
        yield device


def test_round_trip_64k(dev):
    base, size = dev.regions["scratch"]
    data = np.random.default_rng(1).integers(0, 256, 64 * 1024, dtype=np.uint8)
    dev.write(base, data)
    assert dev.read(base, data.size) == data.tobytes()


def test_info_matches_generator(dev):
    expected = mm.soc_memory_map(SIM_CONFIG)
    assert dev.info["magic"] == mm.MAGIC
    assert dev.info["version"] == mm.FORMAT_VERSION
    assert dev.info["map_hash"] == expected.hash
    for field in ("clock_hz", "baud", "scratch_bytes", "max_transfer"):
        assert dev.info[field] == getattr(SIM_CONFIG, field)
    assert dev.regions["scratch"] == (expected.region("scratch").base, SIM_CONFIG.scratch_bytes)
    assert dev.regions["scratch"][1] >= 16 * 1024


def test_registers_and_counter(dev):
    dev.write_reg("test_word", 0xDEADBEEF)
    assert dev.read_reg("test_word") == 0xDEADBEEF
    assert dev.read_reg("csr.test_word") == 0xDEADBEEF
    c0 = dev.cycles()
    c1 = dev.cycles()
    assert c1 > c0
    regs = dev.registers()
    assert regs["link_requests"] > 0 and regs["link_header_errors"] == 0
    with pytest.raises(tensornic.ReadOnly):
        dev.write_reg("cycles_lo", 1)
    with pytest.raises(KeyError, match="no register"):
        dev.read_reg("nonexistent")


def test_unaligned_access(dev):
    base, _ = dev.regions["scratch"]
    dev.write(base, bytes(range(16)))
    dev.write(base + 3, b"\xAA\xBB\xCC\xDD\xEE")
    assert dev.read(base, 16) == bytes([0, 1, 2, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE]) + bytes(range(8, 16))
    assert dev.read(base + 5, 3) == b"\xCC\xDD\xEE"


def test_out_of_range_is_refused(dev):
    base, size = dev.regions["scratch"]
    with pytest.raises(ValueError, match="region"):
        dev.read(base + size - 4, 8)
    # The device's own check, bypassing the host-side one:
    with pytest.raises(tensornic.BadAddress):
        dev.link.read(0x20000, 4)
    with pytest.raises(tensornic.ReadOnly):
        dev.write(0, b"\0\0\0\0")
    assert dev.read_reg("test_word") is not None   # still answering


def test_stale_bitstream_is_refused(monkeypatch):
    from tensornic.sim.device import SimTransport, build_harness
    built_binary = build_harness()          # "the bitstream", built from today's map
    built = mm.soc_memory_map(SIM_CONFIG).hash
    # The installed package changes: a newer version has one more register.
    extra = mm.Register("added_later", "rw", "a register a newer package has")
    monkeypatch.setattr(mm, "SPINE_REGISTERS", mm.SPINE_REGISTERS + (extra,))
    newer = mm.soc_memory_map(SIM_CONFIG).hash
    assert newer != built
    transport = SimTransport(binary=built_binary)
    with pytest.raises(tensornic.DeviceMismatch) as info:
        tensornic.Device(transport)
    assert f"{built:08x}" in str(info.value) and f"{newer:08x}" in str(info.value)
    assert "stale" in str(info.value)
    assert not _alive(transport.pid)        # the refused device was closed


def test_bit_level_uart_path():
    with tensornic.open("sim-uart") as dev:
        assert dev.info["map_hash"] == mm.soc_memory_map(SIM_CONFIG).hash
        base, _ = dev.regions["scratch"]
        data = os.urandom(4096)
        dev.write(base, data)
        assert dev.read(base, 4096) == data
        assert dev.read_reg("uart_framing_errors") == 0


def test_runtime_baud_change():
    from tensornic.rtl.uart import divisor_for
    with tensornic.open("sim-uart") as dev:
        dev.set_baud(1_000_000)
        base, _ = dev.regions["scratch"]
        data = os.urandom(4096)            # a full-size transfer: timeouts must follow the new rate
        dev.write(base, data)
        assert dev.read(base, 4096) == data
        assert dev.read_reg("uart_divisor") == divisor_for(SIM_CONFIG.clock_hz, 1_000_000)
        # The old rate no longer works: the device really switched.
        dev.transport.set_baud(SIM_CONFIG.baud)
        with pytest.raises((tensornic.DeviceTimeout, tensornic.LinkError)):
            dev.link.retries = 1
            dev.link.nop()


def test_no_single_write_locks_the_host_out(dev):
    with pytest.raises(ValueError, match="accepts"):
        dev.write_reg("uart_divisor", 8)                 # 0.5 cycles per bit
    with pytest.raises(TypeError):
        dev.write_reg("test_word", 1.5)
    # Past the host's checks, the device itself ignores an out-of-range divisor ...
    divisor = dev.read_reg("uart_divisor")
    dev.link.write(dev.register_address("uart_divisor"), (8).to_bytes(4, "little"))
    assert dev.read_reg("uart_divisor") == divisor
    # ... and an idle timeout shorter than a byte is stretched to a few byte times, so frames still pass.
    dev.write_reg("link_resync_cycles", 1)
    try:
        base, _ = dev.regions["scratch"]
        dev.write(base, b"still here")
        assert dev.read(base, 10) == b"still here"
    finally:
        dev.write_reg("link_resync_cycles", SIM_CONFIG.resync_cycles)


def test_wrong_baud_is_a_named_error():
    t0 = time.monotonic()
    with pytest.raises((tensornic.DeviceTimeout, tensornic.LinkError)) as info:
        tensornic.open("sim-uart", baud=2_000_000, timeout=0.1, retries=2)
    assert time.monotonic() - t0 < 30
    assert "baud" in str(info.value)


def test_unresponsive_port_times_out():
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        t0 = time.monotonic()
        with pytest.raises(tensornic.DeviceTimeout, match="baud|port|simulator|programmed"):
            tensornic.open(path, timeout=0.05, retries=2)
        assert time.monotonic() - t0 < 5
    finally:
        os.close(master)
        os.close(slave)


def test_missing_port():
    with pytest.raises(tensornic.TransportError, match="does not exist"):
        tensornic.open("/dev/ttyNOPE0")


def test_simulator_dies_with_device():
    dev = tensornic.open("sim")
    pid = dev.transport.pid
    dev.close()
    assert not _alive(pid)


def test_dead_simulator_is_reported():
    dev = tensornic.open("sim", timeout=0.1, retries=2)
    os.kill(dev.transport.pid, signal.SIGKILL)
    time.sleep(0.2)
    with pytest.raises(tensornic.SimulatorError, match="exited"):
        dev.read_reg("test_word")
    dev.close()


def test_simulator_dies_with_host_process():
    script = textwrap.dedent("""
        import os, sys, tensornic
        dev = tensornic.open("sim")
        print(dev.transport.pid, flush=True)
        os._exit(0)   # no cleanup: as if the host crashed
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    pid = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_device_outlives_the_thread_that_opened_it():
    import threading
    holder = {}
    opener = threading.Thread(target=lambda: holder.update(dev=tensornic.open("sim")))
    opener.start()
    opener.join()
    with holder["dev"] as dev:
        dev.write_reg("test_word", 7)
        assert dev.read_reg("test_word") == 7
