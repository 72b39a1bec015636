"""Host bridge test bench: the whole SoC (byte port selected) under cocotb + Verilator.

Requests go in with random idle gaps, responses come out under random backpressure. Valid traffic is
checked against a shadow memory; every kind of bad input is followed by a valid request that must be
answered correctly. The response stream is also compared byte for byte with the Python link model
(host/link_model.py), an independent statement of docs/host-link.md.
"""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from tensornic.rtl.link_format import (Op, Status, encode_request, encode_response, crc32,
                                       RESPONSE_HEADER_BYTES, SYNC_REQUEST)

SCRATCH = 0x10000
RESYNC = 600   # cycles; the tests set link_resync_cycles to this so timeouts are quick (the gateware's
               # floor is 2 × uart_divisor = 512 cycles at the default 3 Mbaud / 48 MHz)


def csr(name):
    from tensornic.rtl.memory_map import SocConfig, soc_memory_map
    return soc_memory_map(SocConfig()).register_address("csr", name)


class TB:
    def __init__(self, dut, gaps=True, backpressure=True):
        self.dut = dut
        self.gaps = gaps
        self.backpressure = backpressure
        self.received = bytearray()
        self.seq = 0
        self.scratch_writes = 0
        self.rng = random.Random(cocotb.RANDOM_SEED)
        cocotb.start_soon(Clock(dut.clk, 10, "ns").start())
        cocotb.start_soon(self._sink())
        cocotb.start_soon(self._count_writes())

    async def reset(self):
        dut = self.dut
        dut.use_byte_port.value = 1
        dut.host_rx__valid.value = 0
        dut.host_rx__payload.value = 0
        dut.uart_rx.value = 1
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 2)

    async def _sink(self):
        dut = self.dut
        while True:
            dut.host_tx__ready.value = int(not self.backpressure or self.rng.random() < 0.6)
            await RisingEdge(dut.clk)
            if int(dut.host_tx__valid.value) and int(dut.host_tx__ready.value):
                self.received.append(int(dut.host_tx__payload.value))

    async def _count_writes(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            if int(dut.scratch.bus__w_en.value) and not int(dut.scratch.bus__ack.value):
                self.scratch_writes += 1

    async def send(self, data):
        dut = self.dut
        for byte in data:
            while self.gaps and self.rng.random() < 0.3:
                dut.host_rx__valid.value = 0
                await RisingEdge(dut.clk)
            dut.host_rx__valid.value = 1
            dut.host_rx__payload.value = byte
            await RisingEdge(dut.clk)
            while not int(dut.host_rx__ready.value):
                await RisingEdge(dut.clk)
        dut.host_rx__valid.value = 0

    async def expect(self, nbytes, cycles=20000):
        for _ in range(cycles):
            if len(self.received) >= nbytes:
                break
            await RisingEdge(self.dut.clk)
        out = bytes(self.received[:nbytes])
        del self.received[:nbytes]
        return out

    async def silence(self, cycles):
        """Wait and assert the device says nothing."""
        await ClockCycles(self.dut.clk, cycles)
        assert not self.received, f"unexpected bytes: {bytes(self.received).hex()}"

    def next_seq(self):
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    async def request(self, op, addr, payload=b"", length=None):
        seq = self.next_seq()
        await self.send(encode_request(op, seq, addr, payload, length))
        header = await self.expect(RESPONSE_HEADER_BYTES)
        assert len(header) == RESPONSE_HEADER_BYTES, f"no response to {op.name} {addr:#x}"
        status, rseq, rlen = header[1], header[2], int.from_bytes(header[3:5], "little")
        data = await self.expect(rlen + 4) if rlen else b""
        frame = header + data
        assert rseq == seq
        expected = encode_response(status, seq, data[:rlen])
        assert frame == expected, f"malformed response {frame.hex()} (expected {expected.hex()})"
        return Status(status), data[:rlen]

    async def read(self, addr, n):
        status, data = await self.request(Op.READ, addr, length=n)
        assert status == Status.OK, status
        return data

    async def write(self, addr, payload):
        status, _ = await self.request(Op.WRITE, addr, payload)
        assert status == Status.OK, status

    async def short_resync(self):
        await self.write(csr("link_resync_cycles"), RESYNC.to_bytes(4, "little"))


def framing_trap(n):
    """A WRITE payload that exposes a device consuming other than exactly n + 4 bytes: it holds valid NOP
    frames (answered if parsed as requests) and its CRC starts with the sync byte (a device that left the
    CRC in the stream would start a header there and swallow the next request)."""
    nop = encode_request(Op.NOP, 0xEE, 0)
    body = (nop * (n // len(nop) + 1))[:n]
    if n < 2:
        return body
    for tweak in range(1 << 16):
        payload = body[:-2] + tweak.to_bytes(2, "little")
        if crc32(payload) & 0xFF == SYNC_REQUEST:
            return payload
    raise AssertionError("no payload found")


async def start(dut, **kw):
    tb = TB(dut, **kw)
    await tb.reset()
    return tb


@cocotb.test()
@cocotb.parametrize(gaps=[False, True], backpressure=[False, True])
async def valid_traffic(dut, gaps, backpressure):
    tb = await start(dut, gaps=gaps, backpressure=backpressure)
    rng = tb.rng
    shadow = bytearray(rng.randbytes(4096))   # memory keeps its contents across tests: set it first
    await tb.write(SCRATCH, shadow)
    for _ in range(30):
        offset = rng.randrange(0, 4096, 4)
        n = rng.randrange(4, min(256, 4096 - offset) + 1, 4)
        if rng.random() < 0.5:
            data = rng.randbytes(n)
            await tb.write(SCRATCH + offset, data)
            shadow[offset:offset + n] = data
        else:
            assert await tb.read(SCRATCH + offset, n) == bytes(shadow[offset:offset + n])
    # A full-size transfer both ways.
    big = rng.randbytes(4096)
    await tb.write(SCRATCH, big)
    assert await tb.read(SCRATCH, 4096) == big
    # The ID ROM holds the map's words.
    from tensornic.rtl.memory_map import SocConfig, soc_memory_map
    words = soc_memory_map(SocConfig()).rom_words()
    rom = await tb.read(0, 4 * len(words))
    assert [int.from_bytes(rom[i:i + 4], "little") for i in range(0, len(rom), 4)] == words
    # Registers: test_word round trip; the cycle counter moves; requests are counted.
    await tb.write(csr("test_word"), b"\x78\x56\x34\x12")
    assert await tb.read(csr("test_word"), 4) == b"\x78\x56\x34\x12"
    c0 = int.from_bytes(await tb.read(csr("cycles_lo"), 4), "little")
    c1 = int.from_bytes(await tb.read(csr("cycles_lo"), 4), "little")
    assert c1 > c0
    await tb.silence(50)


@cocotb.test()
async def error_statuses(dut):
    tb = await start(dut)
    cases = [
        (Op.READ, SCRATCH + 2, None, 4, Status.BAD_ALIGNMENT),
        (Op.READ, SCRATCH, None, 0, Status.BAD_LENGTH),
        (Op.READ, SCRATCH, None, 6, Status.BAD_LENGTH),
        (Op.READ, SCRATCH, None, 4100, Status.BAD_LENGTH),
        (Op.READ, 0x20000, None, 4, Status.BAD_ADDRESS),          # beyond every region
        (Op.READ, SCRATCH - 4, None, 8, Status.BAD_ADDRESS),      # straddles two regions
        (Op.READ, 0x200, None, 4, Status.BAD_ADDRESS),            # hole after the registers
        (Op.WRITE, 0, b"\0" * 8, None, Status.READ_ONLY),         # the ID ROM
        (Op.WRITE, SCRATCH + 1, b"\0" * 8, None, Status.BAD_ALIGNMENT),
        (Op.WRITE, SCRATCH, b"\0" * 4104, None, Status.BAD_LENGTH),  # oversize: payload consumed
        (Op.WRITE, SCRATCH, b"", 0, Status.BAD_LENGTH),
        (0x7E, SCRATCH, None, 4, Status.BAD_OPCODE),
    ]
    await tb.write(SCRATCH, b"keep")
    for op, addr, payload, length, expected in cases:
        if payload:
            payload = framing_trap(len(payload))
        seq = tb.next_seq()
        frame = encode_request(op, seq, addr, payload or b"", length)
        read_seq = tb.next_seq()
        await tb.send(frame + encode_request(Op.READ, read_seq, SCRATCH, length=4))   # back to back
        assert await tb.expect(RESPONSE_HEADER_BYTES) == encode_response(expected, seq), f"{op} {addr:#x}"
        assert await tb.expect(RESPONSE_HEADER_BYTES + 8) == encode_response(Status.OK, read_seq, b"keep")
    await tb.silence(50)


@cocotb.test()
async def corrupted_frames(dut):
    tb = await start(dut)
    await tb.short_resync()
    await tb.write(SCRATCH, b"good" * 4)
    writes = tb.scratch_writes

    # Payload CRC flipped: CRC_ERROR, memory unchanged, counter moves.
    frame = bytearray(encode_request(Op.WRITE, tb.next_seq(), SCRATCH, b"evil" * 4))
    frame[-1] ^= 0x01
    await tb.send(frame)
    header = await tb.expect(RESPONSE_HEADER_BYTES)
    assert header[1] == Status.CRC_ERROR and header[2] == tb.seq
    assert await tb.read(SCRATCH, 16) == b"good" * 4
    assert int.from_bytes(await tb.read(csr("link_payload_errors"), 4), "little") == 1

    # Header CRC flipped: silence, then a valid request is answered.
    frame = bytearray(encode_request(Op.READ, tb.next_seq(), SCRATCH, length=4))
    frame[5] ^= 0x40
    await tb.send(frame)
    await tb.silence(200)
    assert await tb.read(SCRATCH, 4) == b"good"
    assert int.from_bytes(await tb.read(csr("link_header_errors"), 4), "little") == 1

    # Truncated write: dropped after the idle timeout; nothing written.
    frame = encode_request(Op.WRITE, tb.next_seq(), SCRATCH, b"half" * 64)
    await tb.send(frame[:40])
    await tb.silence(RESYNC + 50)
    assert await tb.read(SCRATCH, 16) == b"good" * 4
    assert int.from_bytes(await tb.read(csr("link_resyncs"), 4), "little") >= 1

    # Random garbage (sync bytes included), then silence, then valid traffic.
    for _ in range(5):
        junk = bytes(tb.rng.choice([0xA5, tb.rng.randrange(256)]) for _ in range(tb.rng.randrange(1, 80)))
        await tb.send(junk)
        await ClockCycles(dut.clk, RESYNC + 50)
        tb.received.clear()   # garbage may legitimately parse as a request and be answered
        assert await tb.read(SCRATCH, 16) == b"good" * 4
    assert tb.scratch_writes == writes   # nothing reached memory
    await tb.silence(50)


@cocotb.test()
async def retried_write_executes_once(dut):
    tb = await start(dut)
    seq = tb.next_seq()
    frame = encode_request(Op.WRITE, seq, SCRATCH + 64, b"once" * 8)
    await tb.send(frame)
    assert await tb.expect(RESPONSE_HEADER_BYTES) == encode_response(Status.OK, seq)
    writes = tb.scratch_writes
    assert writes == 8
    for _ in range(3):   # the host lost the answer and retries the same request
        await tb.send(frame)
        assert await tb.expect(RESPONSE_HEADER_BYTES) == encode_response(Status.OK, seq)
    assert tb.scratch_writes == writes
    # Same data, new sequence number: a new request, executed.
    await tb.write(SCRATCH + 64, b"once" * 8)
    assert tb.scratch_writes == writes + 8
    # NOP forgets the remembered write: the old frame executes again.
    nop = tb.next_seq()
    await tb.send(encode_request(Op.NOP, nop, 0))
    assert await tb.expect(RESPONSE_HEADER_BYTES) == encode_response(Status.OK, nop)
    await tb.send(frame)
    assert await tb.expect(RESPONSE_HEADER_BYTES) == encode_response(Status.OK, seq)
    assert tb.scratch_writes == writes + 16
    await tb.silence(50)


@cocotb.test()
async def matches_link_model(dut):
    """Random request streams (valid, corrupted, garbage) give byte-identical answers to the model."""
    from tensornic.link_model import LinkModel, MemoryRegion
    from tensornic.rtl.memory_map import SocConfig, soc_memory_map

    tb = await start(dut)
    await tb.short_resync()
    await tb.write(SCRATCH, bytes(2048))      # the model's memory starts zeroed
    tb.received.clear()
    mmap = soc_memory_map(SocConfig())
    # The model gets the ROM and scratch; the test avoids the live registers (their values are the RTL's).
    rom = b"".join(w.to_bytes(4, "little") for w in mmap.rom_words())
    scratch = mmap.region("scratch")
    model = LinkModel([MemoryRegion("id", 0, 256, read_only=True, init=rom.ljust(256, b"\0")),
                       MemoryRegion("scratch", scratch.base, scratch.size)], max_transfer=4096)
    model.feed(encode_request(Op.NOP, 0, 0))
    rng = tb.rng
    expected = bytearray()
    for i in range(60):
        op = rng.choice([Op.READ, Op.WRITE, Op.WRITE, Op.NOP])
        addr = SCRATCH + rng.randrange(0, 1024, 4) + rng.choice([0, 0, 0, 2])
        n = rng.choice([4, 8, 64, 256, 0, 6])
        if op == Op.WRITE:
            frame = bytearray(encode_request(op, i, addr, rng.randbytes(n), length=n))
        else:
            frame = bytearray(encode_request(op, i, addr, length=n))
        kind = rng.random()
        if kind < 0.15:
            frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
        elif kind < 0.25:
            frame = frame[:rng.randrange(1, len(frame))]
        elif kind < 0.3:
            frame = bytearray(rng.randbytes(rng.randrange(1, 30)))
        if rng.random() < 0.2 and op == Op.WRITE and kind >= 0.3:
            await tb.send(frame)   # a retry of the same frame
            expected += model.feed(bytes(frame))
        await tb.send(frame)
        expected += model.feed(bytes(frame))
        if not model.idle:                           # a partial frame: let it time out on both sides
            await ClockCycles(dut.clk, RESYNC + 100)
            model.idle_timeout()
    # Answers may still be leaving (a long read answer is one byte per cycle): wait for as many bytes as
    # the model gave, with a bound, then a little longer so that any extra byte would show.
    for _ in range(100):
        if len(tb.received) >= len(expected):
            break
        await ClockCycles(dut.clk, 100)
    await ClockCycles(dut.clk, 200)
    assert bytes(tb.received) == bytes(expected), "RTL and model responses differ"


def test_bridge():
    from tensornic.rtl.soc import Soc
    from tensornic.sim.verilator import run_cocotb
    run_cocotb(lambda: Soc(byte_port=True), name="soc", test_module="tensornic.sim.test_bridge")
