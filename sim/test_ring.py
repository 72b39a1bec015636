"""Ring engines behind their UDP endpoints, through a GMII switch model (rtl/ring_link.RingFabric with
link="gmii": real frames, FCS, store-and-forward; faults are dropped frames and bit flips the receivers'
FCS check catches), cocotb + Verilator:
bit-exact vs tensornic.emulator.allreduce on every node for n ∈ {2, 3, 4} (8 slow), all codec pairs,
lengths that are not multiples of n·k, subnormals, ±0, Inf and NaN; seeded drops and corruption (still
bit-exact, retransmissions counted); a dead link (a clean TIMEOUT on every node, no hang).

`drive_ring` is written against a tiny async I/O adapter so the same driver runs under amaranth.sim
(tests/test_ring_unit.py) and cocotb (here).
"""

import numpy as np
import pytest
from amaranth.hdl import Shape

from tensornic import emulator
from tensornic.rtl import nic_format as nf

TEST_MODULE = "tensornic.sim.test_ring"
#: The full-size engine (slow tests) and a small one (CI: quick to build, same logic, more frames).
ENGINE_ARGS = dict(vector_depth=2048, max_payload=1472, window=16)
SMALL_ENGINE_ARGS = dict(vector_depth=512, max_payload=512, window=8)


def ring_vectors(n, length, seed, special=True):
    """Per-rank float32 vectors: normals of mixed magnitude, plus zeros, subnormals, Inf and NaN."""
    rng = np.random.default_rng(seed)
    xs = []
    for _ in range(n):
        x = (rng.standard_normal(length) * np.exp2(rng.integers(-8, 8, length))).astype(np.float32)
        if special:
            bits = x.view(np.uint32)
            kind = rng.integers(0, 400, length)
            bits[kind == 0] = 0x8000_0000
            bits[kind == 1] = 0
            bits[kind == 2] = rng.integers(1, 1 << 23, (kind == 2).sum(), dtype=np.uint32)
            bits[kind == 3] = 0x7F80_0000
            bits[kind == 4] = 0xFFC0_1234
        xs.append(x)
    return xs


def fabric_config(plan, *, job=1, timeout=200_000, rto=20_000, ack_every=4, ack_delay=16_000):
    return dict(world=plan.world, job=job, chunk=plan.chunk, frame=plan.frame,
                frames_per_chunk=plan.frames_per_chunk, slice_frames=plan.slice_frames,
                rs_codec=int(plan.rs_codec), ag_codec=int(plan.ag_codec), timeout=timeout, rto=rto,
                ack_every=ack_every, ack_delay=ack_delay)


async def drive_ring(io, xs, rs_codec="fp32", ag_codec="fp32", *, mx_block=32, slice_frames=4,
                     max_payload=1472, drop=0.0, corrupt=0.0, dead=0, stall=0.0, seed=1, max_cycles=2_000_000,
                     poll=256, **config):
    """Load xs (one float32 vector per node), run one all-reduce, return (results, statuses, stats).

    `io`: `set(name, value)`, `get(name)` and `async tick()` on the RingFabric's ports."""
    n = len(xs)
    plan = nf.plan(xs[0].size, n, rs_codec, ag_codec, mx_block=mx_block, max_payload=max_payload,
                   slice_frames=slice_frames)
    for i, x in enumerate(xs):
        padded = np.zeros(plan.padded, np.float32)
        padded[:x.size] = x
        io.set(f"host_we{i}", 1)
        for addr, word in enumerate(padded.view(np.uint32).tolist()):
            io.set(f"host_addr{i}", addr)
            io.set(f"host_wdata{i}", word)
            await io.tick()
        io.set(f"host_we{i}", 0)
    for name, value in fabric_config(plan, **config).items():
        io.set(name, value)
    io.set("drop", min(int(drop * 2**32), 2**32 - 1))
    io.set("corrupt", min(int(corrupt * 2**32), 2**32 - 1))
    io.set("dead", dead)
    io.set("stall", min(int(stall * 256), 255))
    io.set("seed", seed)
    io.set("load_seed", 1)
    io.set("start", 1)
    await io.tick()
    io.set("load_seed", 0)
    io.set("start", 0)
    cycles = 0
    while True:
        await io.ticks(poll)
        cycles += poll
        statuses = [io.get(f"status{i}") for i in range(n)]
        if all(s in (nf.Status.DONE, nf.Status.ERROR) for s in statuses):
            break
        if cycles > max_cycles:
            raise AssertionError(f"the ring did not finish in {max_cycles} cycles: statuses {statuses}")
    # Let the last ACKs drain (a node that finished still answers retransmissions).
    await io.ticks(200)
    stats = []
    for i in range(n):
        stats.append({"status": nf.Status(io.get(f"status{i}")), "error": nf.ErrorCode(io.get(f"error{i}")),
                      **io.get_struct(f"stats{i}"), "link": io.get_struct(f"link{i}")})
    results = []
    for i in range(n):
        words = []
        for addr in range(xs[0].size):
            io.set(f"host_addr{i}", addr)
            await io.tick()
            words.append(io.get(f"host_rdata{i}"))
        results.append(np.array(words, np.uint32).view(np.float32))
    return results, stats, plan


def check_exact(xs, results, rs_codec, ag_codec, mx_block=32):
    want = emulator.allreduce(xs, rs_codec, ag_codec, mx_block)[0].view(np.uint32)
    for rank, got in enumerate(results):
        bad = np.flatnonzero(got.view(np.uint32) != want)
        assert bad.size == 0, (f"rank {rank}: {bad.size} of {want.size} elements differ, first at {bad[0]}: "
                               f"0x{got.view(np.uint32)[bad[0]]:08x} vs 0x{want[bad[0]]:08x}")


# --- pytest side -----------------------------------------------------------------------------------------

CODEC_PAIRS = [(rs, ag) for rs in ("fp32", "bf16", "mxint8") for ag in ("fp32", "bf16", "mxint8")]


def _run(n, testcase, mx_block=32, small=False, link="gmii", **knobs):
    from tensornic.rtl.ring_link import RingFabric
    from tensornic.sim import verilator
    engine = SMALL_ENGINE_ARGS if small else ENGINE_ARGS
    params = {"n": n, "latency": 200, "mx_block": mx_block, "link": link, **engine}
    knobs.setdefault("slice_frames", (engine["window"] - 1) // 3)
    verilator.run_cocotb(lambda: RingFabric(n, latency=200, mx_block=mx_block, link=link, **engine),
                         name=f"ring_fabric{n}_{link}", test_module=TEST_MODULE, params=params, knobs=knobs,
                         testcase=testcase)


def test_ring_codecs_small():
    """CI: every codec pair on 3 nodes (small engine: 512-byte payloads, many frames per chunk), lengths
    that are not multiples of n·k, special values; bit-exact on every node."""
    _run(3, "codec_pairs", small=True, lengths=[421])


def test_ring_backpressure_small():
    """CI: random backpressure and idle gaps on every engine's tx and rx (50 % of cycles blocked)."""
    _run(3, "codec_pairs", small=True, lengths=[300], stall=0.5, pairs=[["fp32", "fp32"], ["mxint8", "bf16"]])


def test_ring_faults_small():
    """CI: 2 % loss plus 0.5 % corruption on every link with backpressure: bit-exact, retransmissions."""
    _run(3, "faults", small=True, seeds=[1], drop=0.02, corrupt=0.005, length=400)


def test_ring_dead_link_small():
    _run(3, "dead_link", small=True, length=400)


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3, 4])
def test_ring_codecs(n):
    """Every codec pair with full-size frames."""
    _run(n, "codec_pairs", lengths=[1000 + 37 * n, 95])


@pytest.mark.slow
def test_ring_block16():
    _run(3, "codec_pairs", mx_block=16, lengths=[333], pairs=[["mxint8", "mxint8"], ["bf16", "mxint8"]])


@pytest.mark.slow
def test_ring_backpressure():
    _run(3, "codec_pairs", lengths=[777], stall=0.5, pairs=[["fp32", "fp32"], ["mxint8", "bf16"]])


@pytest.mark.slow
def test_ring_faults():
    _run(3, "faults", seeds=[1, 2], drop=0.01, corrupt=0.001, length=2000)


@pytest.mark.slow
def test_ring_heavy_loss():
    _run(3, "faults", seeds=[7], drop=0.1, corrupt=0.05, length=1500)


@pytest.mark.slow
def test_ring_dead_link():
    _run(4, "dead_link", length=2000)


@pytest.mark.slow
def test_ring_8():
    _run(8, "codec_pairs", lengths=[1999])


@pytest.mark.slow
def test_ring_faults_many_seeds():
    """1 % frame loss plus 0.1 % corruption on every link, n = 4, many seeds."""
    _run(4, "faults", seeds=list(range(10, 30)), drop=0.01, corrupt=0.001, length=2000)


# --- cocotb side -----------------------------------------------------------------------------------------

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, FallingEdge
except ImportError:                      # the amaranth.sim tests import this module without cocotb
    cocotb = None


class _CocotbIO:
    def __init__(self, dut, layouts):
        self.dut, self.layouts = dut, layouts

    def set(self, name, value):
        getattr(self.dut, name).value = int(value)

    def get(self, name):
        return int(getattr(self.dut, name).value)

    def get_struct(self, name):
        value = self.get(name)
        layout = self.layouts[name.rstrip("0123456789")]
        return {field: (value >> f.offset) & ((1 << Shape.cast(f.shape).width) - 1) for field, f in layout}

    async def tick(self):
        await FallingEdge(self.dut.clk)

    async def ticks(self, count):
        await ClockCycles(self.dut.clk, count, rising=False)


def _sizes(params):
    return {"max_payload": params["max_payload"], "slice_frames": params["slice_frames"]}


async def _start(dut):
    from tensornic.rtl.ring_engine import STATS_LAYOUT
    from tensornic.rtl.ring_link import LINK_STATS_LAYOUT
    from tensornic.sim import verilator
    Clock(dut.clk, 8, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await FallingEdge(dut.clk)
    return _CocotbIO(dut, {"stats": STATS_LAYOUT, "link": LINK_STATS_LAYOUT}), verilator.cocotb_params()


if cocotb is not None:
    @cocotb.test(timeout_time=2000, timeout_unit="ms")
    async def codec_pairs(dut):
        io, params = await _start(dut)
        n, k = params["n"], params["mx_block"]
        pairs = params.get("pairs") or CODEC_PAIRS
        job = 1
        for length in params["lengths"]:
            for rs, ag in pairs:
                xs = ring_vectors(n, length, seed=job)
                results, stats, plan = await drive_ring(io, xs, rs, ag, mx_block=k, job=job,
                                                        stall=params.get("stall", 0.0), **_sizes(params))
                assert all(s["status"] == nf.Status.DONE for s in stats), (rs, ag, stats)
                check_exact(xs, results, rs, ag, k)
                dut._log.info(f"n={n} L={length} {rs}/{ag}: {stats[0]['cycles']} cycles, "
                              f"{sum(s['retransmits'] for s in stats)} retransmissions")
                job += 1

    @cocotb.test(timeout_time=2000, timeout_unit="ms")
    async def faults(dut):
        io, params = await _start(dut)
        n = params["n"]
        total_lost = total_retx = 0
        for job, seed in enumerate(params["seeds"], start=1):
            for rs, ag in (("fp32", "fp32"), ("bf16", "mxint8")):
                xs = ring_vectors(n, params["length"], seed=seed)
                # The links' counters run since reset: this operation's losses are the difference.
                before = sum(io.get_struct(f"link{i}")["dropped"] + io.get_struct(f"link{i}")["corrupted"]
                             for i in range(n))
                results, stats, plan = await drive_ring(io, xs, rs, ag, drop=params["drop"],
                                                        corrupt=params["corrupt"], seed=seed, job=job,
                                                        rto=8_000, timeout=400_000, stall=0.3, **_sizes(params))
                assert all(s["status"] == nf.Status.DONE for s in stats), (seed, stats)
                check_exact(xs, results, rs, ag)
                lost = sum(s["link"]["dropped"] + s["link"]["corrupted"] for s in stats) - before
                retx = sum(s["retransmits"] for s in stats)
                dut._log.info(f"seed {seed} {rs}/{ag}: {lost} frames lost, {retx} retransmitted, "
                              f"{max(s['cycles'] for s in stats)} cycles")
                total_lost += lost
                total_retx += retx
        # A lost ACK needs no retransmission (the next one covers it), so only the totals must show both.
        assert total_lost > 0 and total_retx > 0, (total_lost, total_retx)

    @cocotb.test(timeout_time=2000, timeout_unit="ms")
    async def dead_link(dut):
        io, params = await _start(dut)
        n = params["n"]
        xs = ring_vectors(n, params["length"], seed=5)
        results, stats, plan = await drive_ring(io, xs, dead=1 << (n - 1), rto=5_000, timeout=50_000, job=9,
                                                **_sizes(params))
        for s in stats:
            assert s["status"] == nf.Status.ERROR and s["error"] == nf.ErrorCode.TIMEOUT, stats
        # The engines recover: the next operation over healthy links is exact.
        results, stats, plan = await drive_ring(io, xs, job=10, **_sizes(params))
        assert all(s["status"] == nf.Status.DONE for s in stats), stats
        check_exact(xs, results, "fp32", "fp32")

    @cocotb.test(timeout_time=100_000, timeout_unit="ms")
    async def bench(dut):
        """Measure the cycles of one all-reduce per codec pair; results to the JSON file `out`."""
        import json
        io, params = await _start(dut)
        n, length = params["n"], params["length"]
        rows = []
        for job, (rs, ag) in enumerate(params["pairs"], start=1):
            xs = ring_vectors(n, length, seed=job, special=False)
            results, stats, plan = await drive_ring(io, xs, rs, ag, job=job, ack_every=params.get("ack_every", 4),
                                                    **_sizes(params))
            assert all(s["status"] == nf.Status.DONE for s in stats), stats
            check_exact(xs, results, rs, ag)
            rows.append({"rs": rs, "ag": ag, "cycles": max(s["cycles"] for s in stats),
                         "retransmits": sum(s["retransmits"] for s in stats),
                         "link_bytes": [s["link"]["bytes"] for s in stats],
                         "frame": plan.frame, "padded": plan.padded, "slice_frames": plan.slice_frames,
                         "frames_sent": [s["frames_sent"] for s in stats],
                         "acks_sent": [s["acks_sent"] for s in stats]})
        with open(params["out"], "w") as f:
            json.dump(rows, f)
