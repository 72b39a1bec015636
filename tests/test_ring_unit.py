"""amaranth.sim unit tests of the ring engine's pieces: the protocol declaration, the byte codecs, and a
small ring of engines through the message-level link model (bit-exact vs tensornic.emulator.allreduce)."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from tensornic import emulator, formats
from tensornic.rtl import nic_format as nf
from tensornic.rtl.ring_codec import ByteDecoder, ByteEncoder


# --- protocol --------------------------------------------------------------------------------------------

def test_header_round_trip():
    raw = nf.pack_header(kind=nf.Kind.DATA, job=7, source=3, codec=2, seq=0x12345678, phase=1, step=2,
                         chunk=5, length=1400, offset=0xABCDE, count=1344)
    assert len(raw) == nf.HEADER_BYTES == 24
    assert raw[:2] == b"TN"
    fields = nf.unpack_header(raw)
    assert fields["seq"] == 0x12345678 and fields["offset"] == 0xABCDE and fields["count"] == 1344
    with pytest.raises(nf.ProtocolError):
        nf.unpack_header(b"\0" * 24)
    with pytest.raises(nf.ProtocolError):
        nf.pack_header(bogus=1)


def test_plan_and_schedule():
    plan = nf.plan(1000, 3, "fp32", "mxint8", slice_frames=2)
    assert plan.padded % (3 * 32) == 0 and plan.chunk * 3 == plan.padded
    assert plan.frame % 32 == 0 and nf.HEADER_BYTES + 4 * plan.frame <= nf.DEFAULT_MAX_PAYLOAD
    for rank in range(3):
        frames = list(plan.frames(rank))
        assert len(frames) == plan.frame_count
        assert [f.seq for f in frames] == list(range(len(frames)))
        # Every element of every chunk is covered once per step.
        for step in range(plan.steps):
            covered = sorted(e for f in frames if f.step == step for e in range(f.offset, f.offset + f.count))
            chunks = {f.chunk for f in frames if f.step == step}
            assert len(chunks) == 1
            c = chunks.pop()
            assert c == (rank - step) % 3
            assert covered == list(range(c * plan.chunk, (c + 1) * plan.chunk))
    with pytest.raises(nf.ProtocolError):
        nf.plan(10, 1)
    with pytest.raises(nf.ProtocolError):
        nf.plan(10, 2, "fp16")
    assert nf.payload_bytes(64, nf.Codec.MXINT8, 32) == 66


@pytest.mark.parametrize("length,world,codec", [(32512, 4, "fp32"), (32512, 4, "mxint8"), (32512, 4, "bf16"),
                                                (8192, 5, "fp32"), (2048, 8, "fp32"), (100, 2, "fp32"),
                                                (130816, 4, "fp32"), (77, 3, "mxint8")])
def test_plan_fills_slices(length, world, codec):
    """Slices are full (a short slice stalls every step of it): the chunk is cut into equal frames,
    slices × F of them, no larger than the largest frame and no smaller than MIN_FRAME_DATA bytes
    unless the chunk is."""
    plan = nf.plan(length, world, codec, codec, slice_frames=5)
    unit = plan.mx_block if codec == "mxint8" else 1
    unit_bytes = nf.payload_bytes(unit, nf.codec_from_name(codec), plan.mx_block)
    largest = (nf.DEFAULT_MAX_PAYLOAD - nf.HEADER_BYTES) // unit_bytes * unit
    assert plan.frame % unit == 0 and plan.frame <= largest and plan.slice_frames <= 5
    frames = plan.frames_per_chunk
    assert frames >= -(-plan.chunk // largest)
    slices = -(-frames // plan.slice_frames)
    if frames >= 5:      # whole slices but possibly the last, short by less than one frame's worth
        assert frames > (slices - 1) * plan.slice_frames + plan.slice_frames - 1 - (plan.chunk % plan.frame == 0)
    if frames > 1:
        assert plan.frame // unit * unit_bytes >= nf.MIN_FRAME_DATA
    assert nf.plan(32512, 4, codec, codec, slice_frames=5).frames_per_chunk % 5 == 0


# --- stream helpers ----------------------------------------------------------------------------------------

async def send(ctx, stream, items, rng, idle=0.3):
    for item in items:
        while rng.random() < idle:
            await ctx.tick()
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload, item)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)


async def receive(ctx, stream, count, rng, stall=0.3):
    out = []
    while len(out) < count:
        ready = rng.random() >= stall
        ctx.set(stream.ready, ready)
        await ctx.delay(1e-9)                  # let comb logic settle before sampling
        if ready and ctx.get(stream.valid):
            out.append(ctx.get(stream.payload))
        await ctx.tick()
    ctx.set(stream.ready, 0)
    return out


def special_values(rng, n):
    """Random FP32 patterns with many zeros, subnormals, Inf and NaN."""
    bits = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    kind = rng.integers(0, 10, n)
    bits[kind == 0] &= 0x8000_0000                       # ±0
    bits[kind == 1] &= 0x807F_FFFF                       # subnormals
    bits[(kind == 2) & (rng.random(n) < 0.1)] = 0x7F80_0000
    bits[(kind == 3) & (rng.random(n) < 0.05)] = 0x7FC0_0001
    normal = kind >= 4
    bits[normal] = (bits[normal] & 0x807F_FFFF) | (rng.integers(100, 150, normal.sum()).astype(np.uint32) << 23)
    return bits


@pytest.mark.parametrize("codec", ["fp32", "bf16", "mxint8"])
@pytest.mark.parametrize("block", [32, 16])
def test_byte_codecs(codec, block):
    if codec != "mxint8" and block == 16:
        pytest.skip("the block size only matters to MXINT8")
    rng = np.random.default_rng(1)
    values = special_values(rng, 4 * block)
    if codec == "fp32":
        wire = values.astype("<u4").tobytes()
    elif codec == "bf16":
        wire = formats.bf16_encode(values.view(np.float32)).astype("<u2").tobytes()
    else:
        wire = formats.mxint8_to_wire(*formats.mxint8_encode(values.view(np.float32), block), block)
    decoded = emulator.codec_round_trip(values.view(np.float32), codec, block).view(np.uint32)

    enc, dec = ByteEncoder(block), ByteDecoder(block)
    for dut, inputs, outputs in ((enc, values.tolist(), list(wire)), (dec, list(wire), decoded.tolist())):
        sim = Simulator(dut)
        sim.add_clock(1e-6)
        got = []
        prng = random.Random(2)

        async def source(ctx):
            ctx.set(dut.codec, nf.codec_from_name(codec))
            await send(ctx, dut.i, inputs, prng)

        async def sink(ctx):
            got.extend(await receive(ctx, dut.o, len(outputs), prng))

        sim.add_testbench(source)
        sim.add_testbench(sink)
        sim.run()
        assert got == outputs, f"{type(dut).__name__} {codec}"


# --- a ring of engines through the link model ----------------------------------------------------------------

class _AmaranthIO:
    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut

    def set(self, name, value):
        self.ctx.set(getattr(self.dut, name), value)

    def get(self, name):
        return self.ctx.get(getattr(self.dut, name))

    def get_struct(self, name):
        view = getattr(self.dut, name)
        return {field: self.ctx.get(getattr(view, field)) for field, _ in view.shape()}

    async def tick(self):
        await self.ctx.tick()

    async def ticks(self, count):
        await self.ctx.tick().repeat(count)


def run_small_ring(n, length, rs_codec, ag_codec, *, mx_block=32, max_payload=256, **kwargs):
    from tensornic.rtl.ring_link import RingFabric
    from tensornic.sim.test_ring import drive_ring
    dut = RingFabric(n, latency=20, vector_depth=512, max_payload=max_payload, window=8, mx_block=mx_block)
    out = {}

    async def bench(ctx):
        out["r"] = await drive_ring(_AmaranthIO(ctx, dut), kwargs.pop("xs"), rs_codec, ag_codec,
                                    mx_block=mx_block, max_payload=max_payload, slice_frames=2, poll=32, **kwargs)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out["r"]


@pytest.mark.parametrize("n,rs,ag,stall", [(2, "fp32", "fp32", 0.0),
                                           pytest.param(3, "bf16", "mxint8", 0.4, marks=pytest.mark.slow)])
def test_small_ring(n, rs, ag, stall):
    """Bit-exact through the link model; the 3-node ring with random backpressure and idle gaps."""
    from tensornic.sim.test_ring import check_exact, ring_vectors
    xs = ring_vectors(n, 100, seed=n)
    results, stats, plan = run_small_ring(n, 100, rs, ag, xs=xs, rto=3000, timeout=20000, stall=stall)
    assert all(s["status"] == nf.Status.DONE for s in stats), stats
    check_exact(xs, results, rs, ag)


@pytest.mark.slow
def test_small_ring_loss():
    """Seeded drops and corruption: go-back-N recovers, the result is still bit-exact, nothing is added twice."""
    from tensornic.sim.test_ring import check_exact, ring_vectors
    xs = ring_vectors(2, 300, seed=9)
    results, stats, plan = run_small_ring(2, 300, "fp32", "bf16", xs=xs, rto=1500, timeout=30000,
                                          drop=0.15, corrupt=0.05, seed=5)
    assert all(s["status"] == nf.Status.DONE for s in stats), stats
    check_exact(xs, results, "fp32", "bf16")
    lost = sum(s["link"]["dropped"] + s["link"]["corrupted"] for s in stats)
    assert lost > 0 and sum(s["retransmits"] for s in stats) > 0


def test_bad_config():
    """world < 2 is refused with BAD_CONFIG instead of running."""
    from tensornic.rtl.ring_engine import RingEngine
    dut = RingEngine(vector_depth=256, max_payload=256, window=8)

    async def bench(ctx):
        ctx.set(dut.world, 1)
        ctx.set(dut.chunk, 32)
        ctx.set(dut.frame, 32)
        ctx.set(dut.frames_per_chunk, 1)
        ctx.set(dut.slice_frames, 1)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await ctx.tick()
        assert ctx.get(dut.status) == nf.Status.ERROR
        assert ctx.get(dut.error) == nf.ErrorCode.BAD_CONFIG

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    with pytest.raises(ValueError):
        RingEngine(window=6)


def test_nic_core_registers():
    """Two NicCores (the SoC's NIC: register bank, vector memory, UDP endpoint) with their GMII ports
    crossed, driven by bus transactions as the host bridge drives them: bit-exact all-reduce, counters,
    status and the Ethernet counters."""
    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring
    from tensornic.rtl import memory_map as mm
    from tensornic.rtl.ring_nic import NicCore
    from tensornic.sim.test_ring import ring_vectors

    cfg = mm.SocConfig(clock_hz=125_000_000, baud=3_125_000, scratch_bytes=4096, nic_vector_words=256,
                       nic_max_payload=256, nic_window=8)
    region = mm.soc_memory_map(cfg).region("nic")
    index = {reg.name: i for i, reg in enumerate(region.registers)}
    m = Module()
    cores = [NicCore(region, vector_words=256, window=8, max_payload=256) for _ in range(2)]
    for i, core in enumerate(cores):
        m.submodules[f"core{i}"] = core
    wiring.connect(m, cores[0].gmii_tx, cores[1].gmii_rx)
    wiring.connect(m, cores[1].gmii_tx, cores[0].gmii_rx)
    cycles = Signal(32, init=0xFFFF_FF00)      # one clock for both, as in the simulated cluster; wraps
    m.d.sync += cycles.eq(cycles + 1)
    m.d.comb += [core.cycles.eq(cycles) for core in cores]

    xs = ring_vectors(2, 100, seed=11)
    want = emulator.allreduce(xs, "mxint8", "fp32")[0].view(np.uint32)
    plan = nf.plan(100, 2, "mxint8", "fp32", max_payload=256, slice_frames=2)

    async def access(ctx, bus, addr, data=None):
        ctx.set(bus.addr, addr)
        if data is None:
            ctx.set(bus.r_en, 1)
        else:
            ctx.set(bus.w_data, data)
            ctx.set(bus.w_en, 1)
        await ctx.tick()
        while not ctx.get(bus.ack):
            await ctx.tick()
        value = ctx.get(bus.r_data)
        ctx.set(bus.r_en, 0)
        ctx.set(bus.w_en, 0)
        await ctx.tick()
        return value

    async def bench(ctx):
        for rank, core in enumerate(cores):
            padded = np.zeros(plan.padded, np.float32)
            padded[:100] = xs[rank]
            for addr, word in enumerate(padded.view(np.uint32).tolist()):
                await access(ctx, core.vector, addr, word)
            for name, value in (("rank", rank), ("world", 2), ("job", 3), ("chunk", plan.chunk),
                                ("frame", plan.frame), ("frames_per_chunk", plan.frames_per_chunk),
                                ("slice_frames", 2), ("codecs", int(plan.rs_codec) | int(plan.ag_codec) << 2),
                                ("timeout", 50_000), ("rto", 3_000), ("ack_every", 2), ("ack_delay", 500),
                                ("mac_hi", 0x0274), ("mac_lo", 0x6E00_0000 + rank), ("ip", 0x0A00_0001 + rank),
                                ("udp_port", 4000 + rank)):
                await access(ctx, core.regs, index[name], value)
            other = 1 - rank
            for prefix in ("next_", "prev_"):
                for name, value in (("mac_hi", 0x0274), ("mac_lo", 0x6E00_0000 + other),
                                    ("ip", 0x0A00_0001 + other), ("port", 4000 + other)):
                    await access(ctx, core.regs, index[prefix + name], value)
        # Timed start: armed some hundred cycles apart, both start on the cycle `start_at` (past the
        # counter's wrap), which the start_cycle registers show; busy while armed.
        start_at = (ctx.get(cycles) + 600) & 0xFFFF_FFFF
        for core in cores:
            await access(ctx, core.regs, index["start_at"], start_at)
        for core in cores:
            await access(ctx, core.regs, index["control"], 2)
            assert ctx.get(core.busy) and ctx.get(core.engine.status) == nf.Status.IDLE
            assert await access(ctx, core.regs, index["status"]) == nf.Status.BUSY     # armed counts as busy
            await ctx.tick().repeat(200)
        for _ in range(400):
            await ctx.tick().repeat(50)
            if all(ctx.get(core.engine.status) >= nf.Status.DONE for core in cores):
                break
        for core in cores:
            assert await access(ctx, core.regs, index["status"]) == nf.Status.DONE
            assert await access(ctx, core.regs, index["frames_sent"]) == plan.frame_count
            assert await access(ctx, core.regs, index["bytes_sent"]) > 0
            assert await access(ctx, core.regs, index["start_cycle"]) == start_at
            got = [await access(ctx, core.vector, addr) for addr in range(100)]
            assert got == want.tolist()
            received = await access(ctx, core.regs, index["eth_frames_received"])
            sent = await access(ctx, core.regs, index["eth_frames_sent"])
            assert received >= plan.frame_count and sent >= plan.frame_count
            for name in ("eth_fcs_errors", "eth_not_for_us", "eth_overflows", "eth_tx_dropped"):
                assert await access(ctx, core.regs, index[name]) == 0, name

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_job_numbers_agree_across_rings():
    """Ranks that sat out operations of a smaller ring still agree on the next operation's job number
    (a mismatch makes every node ignore the others' frames until the watchdog ends the operation)."""
    from types import SimpleNamespace
    from tensornic import nic
    devs = [SimpleNamespace() for _ in range(3)]
    assert nic._next_job(devs) == 1
    assert nic._next_job(devs[:2]) == 2 and nic._next_job(devs[:2]) == 3
    assert nic._next_job(devs) == 4
    assert [dev._nic_job for dev in devs] == [4, 4, 4]
    devs[0]._nic_job = 0xFFFF
    assert nic._next_job(devs) == 1            # 16 bits in the header; 0 is never used
