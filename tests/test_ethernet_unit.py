"""amaranth.sim unit tests of rtl/ethernet.py and rtl/udp.py, each against tensornic.netframes (the frame
model) or a plain-Python statement of the rule: CRC/FCS, padding, preamble and inter-frame gap, underrun,
receiver verdicts, the frame buffer's commit/rewind/overflow under backpressure, and UdpEndpoint's
filter rules and counters. The long traffic runs are in sim/test_ethernet.py (cocotb + Verilator)."""

import gc
import random
import zlib

import pytest
from amaranth.sim import Simulator

from tensornic import netframes as nf
from tensornic.rtl.ethernet import EthReceiver, EthTransmitter, FrameBuffer
from tensornic.rtl.udp import COUNTER_NAMES, UdpEndpoint, default_buffer_bytes

LOCAL = dict(mac=0x02005E100002, ip=0x0A010002, port=47001)
PEER = dict(mac=0x02005E100001, ip=0x0A010001, port=47000)


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(8e-9)
    sim.add_testbench(bench)
    sim.run()


def padded_with_fcs(body):
    body = bytes(body) + bytes(max(0, 60 - len(body)))
    return body + zlib.crc32(body).to_bytes(4, "little")


def split_wire(samples):
    """(en, data, er) per cycle → list of (idle cycles before, bytes driven while en)."""
    frames, current, idle = [], None, 0
    for en, byte, er in samples:
        assert er == 0, "TX_ER was driven"
        if en:
            if current is None:
                current = bytearray()
                frames.append([idle, current])
            current.append(byte)
            idle = 0
        else:
            current = None
            idle += 1
    return [(gap, bytes(data)) for gap, data in frames]


# --- transmitter ------------------------------------------------------------------------------------------

def test_transmitter_wire_format_padding_and_gap():
    rng = random.Random(1)
    bodies = [bytes(rng.randrange(256) for _ in range(n)) for n in (1, 14, 59, 60, 61, 100, 20, 20, 20)]
    dut = EthTransmitter()
    samples = []

    async def bench(ctx):
        for k, body in enumerate(bodies):
            # The first frames wait behind idle cycles; the last three are offered back to back.
            if k < 6:
                for _ in range(rng.randrange(0, 30)):
                    samples.append((ctx.get(dut.gmii.en), ctx.get(dut.gmii.data), ctx.get(dut.gmii.er)))
                    await ctx.tick()
            n = 0
            while n < len(body):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, {"data": body[n], "last": int(n == len(body) - 1)})
                if ctx.get(dut.i.ready):
                    n += 1
                samples.append((ctx.get(dut.gmii.en), ctx.get(dut.gmii.data), ctx.get(dut.gmii.er)))
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
        for _ in range(120):
            samples.append((ctx.get(dut.gmii.en), ctx.get(dut.gmii.data), ctx.get(dut.gmii.er)))
            await ctx.tick()
        assert ctx.get(dut.frames) == len(bodies) and ctx.get(dut.underruns) == 0 and ctx.get(dut.idle)

    run(dut, bench)
    frames = split_wire(samples)
    assert [data for _, data in frames] == [nf.gmii_bytes(padded_with_fcs(b)) for b in bodies]
    for gap, _ in frames[1:]:
        assert gap >= 12
    assert [gap for gap, _ in frames[-3:]] == [12, 12, 12], "back-to-back frames must keep a 12-byte gap"


def test_transmitter_underrun_sends_bad_fcs():
    body = bytes(range(70))
    dut = EthTransmitter()
    samples = []

    async def bench(ctx):
        n = 0
        stalled = False
        while n < len(body):
            stall = n == 30 and not stalled and ctx.get(dut.i.ready)     # one cycle with no byte at 30
            stalled |= stall
            ctx.set(dut.i.valid, int(not stall))
            ctx.set(dut.i.payload, {"data": body[n], "last": int(n == len(body) - 1)})
            if ctx.get(dut.i.ready) and not stall:
                n += 1
            samples.append((ctx.get(dut.gmii.en), ctx.get(dut.gmii.data), ctx.get(dut.gmii.er)))
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(30):
            samples.append((ctx.get(dut.gmii.en), ctx.get(dut.gmii.data), ctx.get(dut.gmii.er)))
            await ctx.tick()
        assert ctx.get(dut.frames) == 1 and ctx.get(dut.underruns) == 1

    run(dut, bench)
    (_, wire), = split_wire(samples)
    frame = wire[8:]
    assert len(frame) == 75
    assert zlib.crc32(frame) != 0x2144DF1C, "an underrun frame must fail its FCS"
    assert frame[:-4] == body[:30] + b"\0" + body[30:]


# --- receiver ---------------------------------------------------------------------------------------------

def wire_cycles(frames):
    """frames: (preamble bytes, frame bytes, er_at index or None, idle after) → per-cycle (en, data, er)."""
    cycles = [(0, 0, 0)] * 3
    for preamble, data, er_at, idle in frames:
        for byte in preamble:
            cycles.append((1, byte, 0))
        for k, byte in enumerate(data):
            cycles.append((1, byte, int(k == er_at)))
        cycles += [(0, 0, 0)] * idle
    return cycles + [(0, 0, 0)] * 10


def test_receiver_verdicts():
    rng = random.Random(2)
    max_frame = 200
    good = padded_with_fcs(bytes(rng.randrange(256) for _ in range(100)))
    short = padded_with_fcs(bytes(10))[:50]
    short = short[:-4] + zlib.crc32(short[:-4]).to_bytes(4, "little")      # good FCS, 50 bytes
    long_ = padded_with_fcs(bytes(rng.randrange(256) for _ in range(max_frame - 3)))
    exact = padded_with_fcs(bytes(rng.randrange(256) for _ in range(max_frame - 4)))
    bad_fcs = good[:-1] + bytes([good[-1] ^ 0x80])
    pre = nf.PREAMBLE
    cases = [   # (preamble, data, er index, idle), expected status, expected bytes
        ((pre, good, None, 12), (0, 0, 0, 0), good[:-4]),
        ((pre[2:], good, None, 1), (0, 0, 0, 0), good[:-4]),            # short preamble, 1-cycle gap
        ((b"\xd5", exact, None, 12), (0, 0, 0, 0), exact[:-4]),          # SFD only; exactly max_frame
        ((pre, bad_fcs, None, 12), (1, 0, 0, 0), good[:-4]),
        ((pre, good, 40, 12), (0, 1, 0, 0), good[:-4]),
        ((pre, short, None, 12), (0, 0, 1, 0), short[:-4]),
        ((pre, long_, None, 12), (0, 0, 0, 1), long_[:max_frame - 4]),
        ((pre, b"\x01\x02", None, 12), (1, 0, 1, 0), b""),
        ((pre, good, None, 12), (0, 0, 0, 0), good[:-4]),
    ]
    cycles = wire_cycles([c[0] for c in cases])
    dut = EthReceiver(max_frame=max_frame)
    got, current = [], bytearray()

    async def bench(ctx):
        nonlocal current
        last_end = -100
        for t, (en, byte, er) in enumerate(cycles):
            ctx.set(dut.gmii.en, en)
            ctx.set(dut.gmii.data, byte)
            ctx.set(dut.gmii.er, er)
            await ctx.tick()
            if ctx.get(dut.o_valid):
                assert not current or True
                if not current:
                    assert t - last_end >= 6, "first byte less than 6 cycles after the previous end"
                current.append(ctx.get(dut.o_data))
            if ctx.get(dut.end):
                assert not ctx.get(dut.o_valid)
                s = ctx.get(dut.status)
                got.append(((s["fcs_error"], s["rx_error"], s["too_short"], s["too_long"]), bytes(current)))
                current = bytearray()
                last_end = t

    run(dut, bench)
    assert got == [(status, data) for _, status, data in cases]


# --- frame buffer -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("banks", [1, 4])
@pytest.mark.parametrize("backpressure", [False, True])
def test_frame_buffer_commit_rewind_overflow(backpressure, banks):
    rng = random.Random(3 + backpressure)
    depth = 64
    dut = FrameBuffer(depth, bank_bytes=depth // banks)
    # (bytes, action): "commit", "rewind", or "stall" (the reader stops until this frame is written).
    plan = []
    for k in range(60):
        n = rng.randrange(1, 40)
        action = rng.choice(["commit", "commit", "commit", "rewind"])
        plan.append((bytes(rng.randrange(256) for _ in range(n)), action))
    # Overflow: the reader is stalled while 3 frames of 30 go in: the third cannot fit.
    overflow_at = 40
    expected = []
    received = []
    overflows = [0]

    async def bench(ctx):
        held = None
        stalled = False
        held_since = 0
        pending_frames = [(f, a) for f, a in plan]
        out_frame = bytearray()

        def read_cycle():
            nonlocal held, out_frame
            ready = 0 if stalled else (int(rng.random() < 0.6) if backpressure else 1)
            ctx.set(dut.r.ready, ready)
            if ctx.get(dut.r.valid):
                payload = ctx.get(dut.r.payload)
                value = (payload["data"], payload["last"])
                assert held is None or held == value, "r.payload changed before it was taken"
                if ready:
                    out_frame.append(value[0])
                    if value[1]:
                        received.append(bytes(out_frame))
                        out_frame = bytearray()
                    held = None
                else:
                    held = value
            else:
                assert held is None, "r.valid fell before the byte was taken"

        for k, (frame, action) in enumerate(pending_frames):
            if k == overflow_at:
                stalled = True
                # drain first so the buffer is empty, then stall: frames 40, 41 fit (60 bytes), 42 not.
                for _ in range(200):
                    stalled = False
                    read_cycle()
                    await ctx.tick()
                stalled = True
                frame, action = bytes(30), "commit"
            if overflow_at <= k < overflow_at + 3:
                frame = bytes([k]) * 30
                action = "commit"
            for _ in range(rng.randrange(0, 4)):
                read_cycle()
                await ctx.tick()
            lost = False
            for n, byte in enumerate(frame):
                lost |= not ctx.get(dut.w_room)
                ctx.set(dut.w_en, 1)
                ctx.set(dut.w_data, {"data": byte, "last": int(n == len(frame) - 1)})
                last = n == len(frame) - 1
                ctx.set(dut.commit, int(last and action == "commit"))   # commit with the last write
                read_cycle()
                await ctx.tick()
            ctx.set(dut.w_en, 0)
            ctx.set(dut.commit, 0)
            if action == "rewind":
                ctx.set(dut.rewind, 1)
                read_cycle()
                await ctx.tick()
                ctx.set(dut.rewind, 0)
            if overflow_at <= k < overflow_at + 3:
                if k < overflow_at + 2:
                    expected.append(frame)
                else:
                    assert ctx.get(dut.overflow) == 0, "a commit must clear overflow"
                if k == overflow_at + 2:
                    stalled = False
            elif action == "commit" and not lost:
                expected.append(frame)
            overflows[0] += lost and action == "commit" and not overflow_at <= k < overflow_at + 3
        stalled = False
        for _ in range(400):
            read_cycle()
            await ctx.tick()
        assert ctx.get(dut.empty) and not ctx.get(dut.r.valid)

    run(dut, bench)
    assert received == expected
    if not backpressure:
        assert overflows[0] == 0, "a reader that keeps up never lets the buffer overflow"


def test_frame_buffer_overflow_flag():
    dut = FrameBuffer(16)

    async def bench(ctx):
        for n in range(17):
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_data, {"data": n, "last": 0})
            assert ctx.get(dut.w_room) == (n < 16)
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        assert ctx.get(dut.overflow) == 1
        ctx.set(dut.commit, 1)          # acts as a rewind
        await ctx.tick()
        ctx.set(dut.commit, 0)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.overflow) == 0 and ctx.get(dut.empty) and ctx.get(dut.w_room)
        assert not ctx.get(dut.r.valid)

    run(dut, bench)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")   # components never elaborated
def test_parameter_errors():
    for bad in (0, 15, 24, 100):
        with pytest.raises(ValueError, match="power of two"):
            FrameBuffer(bad)
    with pytest.raises(ValueError, match="bank_bytes"):
        FrameBuffer(64, bank_bytes=24)
    with pytest.raises(ValueError, match="ifg_bytes"):
        EthTransmitter(ifg_bytes=11)
    with pytest.raises(ValueError, match="max_frame"):
        EthReceiver(max_frame=63)
    with pytest.raises(ValueError, match="max_payload"):
        UdpEndpoint(max_payload=9001)
    with pytest.raises(ValueError, match="max_payload"):
        UdpEndpoint(max_payload=0)
    with pytest.raises(ValueError, match="rx_buffer_bytes"):
        UdpEndpoint(rx_buffer_bytes=1024)
    with pytest.raises(ValueError, match="tx_buffer_bytes"):
        UdpEndpoint(tx_buffer_bytes=3000)
    assert default_buffer_bytes(9000) == 32768 and default_buffer_bytes(1472) == 4096
    gc.collect()        # the half-built components warn here, under this test's filter


# --- UdpEndpoint: filter rules and counters ---------------------------------------------------------------

def peer_frame(payload, **kw):
    args = dict(src_mac=PEER["mac"], dst_mac=LOCAL["mac"], src_ip=PEER["ip"], dst_ip=LOCAL["ip"],
                src_port=PEER["port"], dst_port=LOCAL["port"])
    args.update(kw)
    return nf.build_frame(payload, **args)


def refcs(body):
    return bytes(body) + nf.fcs(bytes(body))


def poke(frame, offset, value):
    body = bytearray(frame[:-4])
    body[offset] = value
    return refcs(body)


def poke_ip(frame, offset, value):
    """Change one IPv4 header byte and make the header checksum and FCS right again."""
    body = bytearray(frame[:-4])
    body[offset] = value
    body[24:26] = b"\0\0"
    body[24:26] = nf.ipv4_checksum(bytes(body[14:34])).to_bytes(2, "big")
    return refcs(body)


def configure(ctx, dut):
    ctx.set(dut.config.local_mac, LOCAL["mac"])
    ctx.set(dut.config.local_ip, LOCAL["ip"])
    ctx.set(dut.config.local_port, LOCAL["port"])


def counters(ctx, dut):
    return {name: ctx.get(getattr(dut.counters, name)) for name in COUNTER_NAMES}


def test_endpoint_filter_rules():
    rng = random.Random(4)
    good = peer_frame(b"hello, ring", with_udp_checksum=True)
    frames = [
        (good, False),
        (peer_frame(b"x" * 300), False),                                  # checksum 0: not verified
        (good[:-1] + bytes([good[-1] ^ 1]), False),                        # FCS
        (good, True),                                                       # RX_ER
        (peer_frame(b"y", dst_mac=0x02005E1000FF), False),                 # MAC
        (poke(good, 12, 0x86), False),                                      # EtherType
        (poke(good, 14, 0x46), False),                                      # IHL 6
        (poke(good, 22, 0x3F), False),                                      # TTL changed: IP checksum
        (peer_frame(b"z" * 20, dst_ip=0x0A0100FF), False),                 # IP address
        (peer_frame(b"z" * 20, dst_port=47002), False),                    # port
        (poke(good, 50, good[50] ^ 0x10), False),                           # payload: UDP checksum
        (refcs(bytes(40)), False),                                          # runt (44 bytes)
        (peer_frame(bytes(rng.randrange(256) for _ in range(200))), False),
    ]
    # A frame with consistent checksums but a UDP length that disagrees with the IPv4 length.
    body = bytearray(peer_frame(b"w" * 30)[:-4])
    body[39] += 1
    frames.append((refcs(body), False))
    frames += [
        (poke_ip(good, 20, 0x60), False),                                   # DF + MF: a fragment
        (poke_ip(good, 21, 0x08), False),                                   # fragment offset
        (poke_ip(good, 23, 6), False),                                      # TCP
        (poke_ip(good, 17, 28), False),                                     # total length 28: empty
        (refcs(peer_frame(b"abc")[:45] + b"trailing bytes after the datagram"), False),
        (good, False),
    ]

    expected_counts = dict.fromkeys(COUNTER_NAMES, 0)
    expected_payloads = []
    for frame, er in frames:
        try:
            d = nf.parse_frame(frame, local_mac=LOCAL["mac"], local_ip=LOCAL["ip"], local_port=LOCAL["port"],
                               rx_error=er)
            expected_payloads.append(d.payload)
            expected_counts["frames_received"] += 1
        except nf.FrameError as error:
            expected_counts[error.counter] += 1
    assert expected_counts["frames_received"] == 5 and sum(expected_counts.values()) == len(frames)

    dut = UdpEndpoint(max_payload=512, rx_buffer_bytes=1024)
    received, current = [], bytearray()

    async def bench(ctx):
        nonlocal current
        configure(ctx, dut)
        cycles = wire_cycles([(nf.PREAMBLE, f, 30 if er else None, 12) for f, er in frames])
        cycles += [(0, 0, 0)] * 1000       # time to drain the receive buffer at half rate
        for en, byte, e in cycles:
            ctx.set(dut.gmii_rx.en, en)
            ctx.set(dut.gmii_rx.data, byte)
            ctx.set(dut.gmii_rx.er, e)
            ready = int(rng.random() < 0.5)
            ctx.set(dut.rx.ready, ready)
            if ready and ctx.get(dut.rx.valid):
                payload = ctx.get(dut.rx.payload)
                current.append(payload["data"])
                if payload["last"]:
                    received.append(bytes(current))
                    current = bytearray()
            await ctx.tick()
        assert counters(ctx, dut) == expected_counts
        assert not ctx.get(dut.rx.valid)

    run(dut, bench)
    assert received == expected_payloads


def test_endpoint_overflow():
    # A 64-byte receive buffer holds two 30-byte payloads; the consumer is stalled: the third is dropped.
    payloads = [bytes([k]) * 30 for k in range(3)]
    dut = UdpEndpoint(max_payload=64, rx_buffer_bytes=64)
    received = []

    async def bench(ctx):
        configure(ctx, dut)
        ctx.set(dut.rx.ready, 0)
        for en, byte, e in wire_cycles([(nf.PREAMBLE, peer_frame(p), None, 12) for p in payloads]):
            ctx.set(dut.gmii_rx.en, en)
            ctx.set(dut.gmii_rx.data, byte)
            await ctx.tick()
        got = counters(ctx, dut)
        assert got["overflows"] == 1 and got["frames_received"] == 2
        ctx.set(dut.rx.ready, 1)
        current = bytearray()
        for _ in range(80):
            if ctx.get(dut.rx.valid):
                payload = ctx.get(dut.rx.payload)
                current.append(payload["data"])
                if payload["last"]:
                    received.append(bytes(current))
                    current = bytearray()
            await ctx.tick()

    run(dut, bench)
    assert received == payloads[:2]


def test_endpoint_transmit_matches_model():
    rng = random.Random(5)
    # Lengths straddling the padding limit; one bad datagram (last too early) in the middle.
    sizes = [1, 17, 18, 19, 45, 7]
    bad_index = 3
    dut = UdpEndpoint(max_payload=64, tx_buffer_bytes=128)
    samples = []

    async def bench(ctx):
        configure(ctx, dut)
        for field in ("mac", "ip", "port"):
            ctx.set(getattr(dut.tx_dst, field), PEER[field])

        async def cycle():
            samples.append((ctx.get(dut.gmii_tx.en), ctx.get(dut.gmii_tx.data), ctx.get(dut.gmii_tx.er)))
            await ctx.tick()

        for k, size in enumerate(sizes):
            ctx.set(dut.tx_length.valid, 1)
            ctx.set(dut.tx_length.payload, size)
            while not ctx.get(dut.tx_length.ready):
                await cycle()
            await cycle()
            ctx.set(dut.tx_length.valid, 0)
            count = size - 2 if k == bad_index else size
            n = 0
            while n < count:
                if rng.random() < 0.3:                       # idle gaps inside the payload
                    ctx.set(dut.tx.valid, 0)
                    await cycle()
                    continue
                ctx.set(dut.tx.valid, 1)
                ctx.set(dut.tx.payload, {"data": (k * 16 + n) & 0xFF, "last": int(n == count - 1)})
                if ctx.get(dut.tx.ready):
                    n += 1
                await cycle()
            ctx.set(dut.tx.valid, 0)
        for _ in range(300):
            await cycle()
        got = counters(ctx, dut)
        assert got["frames_sent"] == len(sizes) - 1 and got["tx_dropped"] == 1
        assert ctx.get(dut.tx_idle)

    run(dut, bench)
    wire = [data for _, data in split_wire(samples)]
    good = [(k, s) for k, s in enumerate(sizes) if k != bad_index]
    expected = [nf.gmii_bytes(nf.build_frame(bytes((k * 16 + n) & 0xFF for n in range(s)),
                                             src_mac=LOCAL["mac"], dst_mac=PEER["mac"], src_ip=LOCAL["ip"],
                                             dst_ip=PEER["ip"], src_port=LOCAL["port"],
                                             dst_port=PEER["port"], ident=i))
                for i, (k, s) in enumerate(good)]
    assert wire == expected
