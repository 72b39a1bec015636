"""Contraction engine test bench: the engine (registers, descriptor memory, memory ports) under cocotb +
Verilator, against the numpy golden model (host/contraction_model.py).

The bench owns an independent memory model of tensor memory behind the engine's two ports with random wait
states (request `ready` drops, response latency 1–4 cycles); register and descriptor accesses go through a
bus model. After each run the whole memory image must equal the model's image, so a stray write anywhere
fails the test. Parameter sets (R, C) ∈ {(1,1), (2,3), (4,4), (8,8)}; the ECP5 multiplier path is checked
against the portable one with a behavioural MULT18X18D model (sim/models/MULT18X18D.v), and the ECP5
block-RAM path (DP16KD with output registers, rtl/ecp5_ram.py) with sim/models/DP16KD.v.
"""

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

PARAM_SETS = {
    (1, 1): dict(rows=1, cols=1, tile_m=2, tile_n=3, chunk_k=16),
    (2, 3): dict(rows=2, cols=3, tile_m=4, tile_n=6, chunk_k=16),
    (4, 4): dict(rows=4, cols=4, tile_m=8, tile_n=8, chunk_k=32),
    (8, 8): dict(rows=8, cols=8, tile_m=16, tile_n=16, chunk_k=32),
}
COMMON = dict(width=8, loops=8, queue=4, tensor_bytes=16384)


def engine_params(shape, **extra):
    return {**COMMON, **PARAM_SETS[shape], **extra}


# --- pytest side -----------------------------------------------------------------------------------------

def _run(params, testcase=None, name="engine", seed=None, extra_sources=()):
    from tensornic.rtl.contraction_engine import ContractionEngine
    from tensornic.sim.verilator import run_cocotb
    build = {k: v for k, v in params.items()}
    if extra_sources:
        return _run_with_sources(params, testcase, name, extra_sources)
    run_cocotb(lambda: ContractionEngine(**build), name=name, test_module="tensornic.sim.test_engine",
               params=build, testcase=testcase, seed=seed)


def _run_with_sources(params, testcase, name, extra_sources, make=None):
    """run_cocotb with extra Verilog sources (the MULT18X18D model): same caching, own build directory.
    `make(params)` builds the design (default: the engine)."""
    import sys
    from filelock import FileLock
    from cocotb_tools.runner import get_runner, get_results
    from tensornic.rtl.contraction_engine import ContractionEngine
    from tensornic.sim import verilator as vl
    make = make or (lambda p: ContractionEngine(**p))

    vl.ensure_verilator_on_path()
    build_dir = vl.build_dir_for("cocotb", name, params)
    build_dir.mkdir(parents=True, exist_ok=True)
    build_args = ["-Wall"] + vl.lint_args() + ["-Wno-PINMISSING", "-O2", "--x-assign", "fast",
                                               "--x-initial", "fast"]
    runner = get_runner("verilator")
    with FileLock(str(build_dir / ".lock")):
        source = build_dir / f"{name}.v"
        vl.write_if_changed(source, vl.to_verilog(make(params), name))
        sources = [source, *map(Path, extra_sources)]
        vl.cached_build(build_dir, [source.read_text(), *(p.read_text() for p in sources[1:]), build_args,
                                    vl.verilator_version(), sys.version],
                        lambda: runner.build(sources=sources, hdl_toplevel=name, build_dir=build_dir,
                                             build_args=build_args, timescale=("1ns", "1ps")))
    run_dir = build_dir / f"run-{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    results = run_dir / "results.xml"
    try:
        runner.test(hdl_toplevel=name, hdl_toplevel_lang="verilog", test_module="tensornic.sim.test_engine",
                    testcase=testcase, build_dir=build_dir, test_dir=run_dir, timescale=("1ns", "1ps"),
                    extra_env={"TENSORNIC_PARAMS": json.dumps(params)}, results_xml=str(results))
    except SystemExit:
        pass
    total, failed = get_results(results)
    assert total and not failed, f"{failed} of {total} cocotb tests failed; see {run_dir}"


@pytest.mark.parametrize("shape", list(PARAM_SETS), ids=lambda s: f"{s[0]}x{s[1]}")
def test_engine(shape):
    _run(engine_params(shape, mult="portable"))


def test_engine_ecp5_multiplier_path():
    """The MULT18X18D instance path (behavioural model) gives the same results as the portable path."""
    model = Path(__file__).parent / "models" / "MULT18X18D.v"
    _run(engine_params((2, 3), mult="ecp5"), name="engine_ecp5",
         extra_sources=[model])


# 8×8 is a long Verilator build: slow (CI keeps 2×3, the same logic).
@pytest.mark.parametrize("shape", [(2, 3), pytest.param((8, 8), marks=pytest.mark.slow)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_engine_ecp5_ram_path(shape):
    """Scratchpads, offset tables and descriptor memory as DP16KD instances with their output registers
    (behavioural model) give the same results as the portable path; with the MULT18X18D path as well, the
    engine is exactly what an ECP5 board gets."""
    models = [Path(__file__).parent / "models" / name for name in ("DP16KD.v", "MULT18X18D.v")]
    _run(engine_params(shape, mult="ecp5", ram="ecp5"), name="engine_ecp5_ram", extra_sources=models)


def _memory_pair(p):
    """Both implementations of one RegisteredMemory side by side, on the same inputs (plain vectors)."""
    from amaranth import Module, Cat
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from tensornic.rtl.ecp5_ram import RegisteredMemory

    width, depth, granularity, ports = p["width"], p["depth"], p["granularity"], p["read_ports"]
    mems = {ram: RegisteredMemory(shape=width, depth=depth, granularity=granularity, read_ports=ports, ram=ram)
            for ram in ("portable", "ecp5")}
    abits, lanes = len(mems["ecp5"].w_addr), mems["ecp5"].lanes

    class MemoryPair(wiring.Component):
        w_addr: In(abits)
        w_data: In(width)
        w_en: In(lanes)
        r_addr: In(abits * ports)
        q_portable: Out(width * ports)
        q_ecp5: Out(width * ports)

        def elaborate(self, platform):
            m = Module()
            for ram, mem in mems.items():
                m.submodules[ram] = mem
                m.d.comb += [mem.w_addr.eq(self.w_addr), mem.w_data.eq(self.w_data), mem.w_en.eq(self.w_en)]
                m.d.comb += [mem.r_addr[i].eq(self.r_addr[i * abits:(i + 1) * abits]) for i in range(ports)]
                m.d.comb += getattr(self, f"q_{ram}").eq(Cat(*(mem.r_data[i] for i in range(ports))))
            return m

    return MemoryPair()


# (width, depth, granularity, read ports): every DP16KD geometry of rtl/ecp5_ram.py (512 × 36 with byte
# enables and dense, 1024 × 18, 2048 × 9), several blocks per port and several ports.
MEMORY_CASES = [(64, 512, 8, 1), (81, 128, None, 2), (32, 1000, 8, 1), (16, 700, 16, 2), (20, 2048, None, 1)]


@pytest.mark.parametrize("case", MEMORY_CASES, ids=lambda c: "x".join(map(str, c)).replace("None", "w"))
def test_registered_memory_ecp5_path(case):
    """RegisteredMemory's DP16KD path (behavioural model with REGMODE "OUTREG") and its portable path return
    the same words as a reference memory, cycle for cycle, under random writes, lane enables and reads
    (including reads of the word being written)."""
    from tensornic.rtl.ecp5_ram import dp16kd_geometry
    width, depth, granularity, ports = case
    assert dp16kd_geometry(width, depth, granularity) is not None      # the ECP5 path is really used
    params = dict(dut="registered_memory", width=width, depth=depth, granularity=granularity, read_ports=ports)
    model = Path(__file__).parent / "models" / "DP16KD.v"
    _run_with_sources(params, "registered_memory_matches_reference", "ram_pair", [model], make=_memory_pair)


# --- cocotb side -----------------------------------------------------------------------------------------

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import RisingEdge, ClockCycles
except ImportError:     # collected by pytest without cocotb installed
    cocotb = None


def _params():
    from tensornic.sim.verilator import cocotb_params
    return cocotb_params()


class TB:
    def __init__(self, dut, backpressure=True):
        from tensornic.rtl.contraction_engine import engine_register_region
        self.dut = dut
        self.p = _params()
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.backpressure = backpressure
        self.mem = bytearray(self.p["tensor_bytes"])
        self.aw = self.p["tensor_bytes"].bit_length() - 1
        self.region = engine_register_region()
        self.ld_queue, self.wb_queue = [], []
        self.cycle = 0
        self.ld_ready = self.wb_ready = 0
        self.ld_driving = self.wb_driving = None
        cocotb.start_soon(Clock(dut.clk, 10, "ns").start())
        cocotb.start_soon(self._memory())

    async def reset(self):
        d = self.dut
        for name in ("regs__addr", "regs__w_data", "regs__w_en", "regs__r_en", "desc__addr", "desc__w_data",
                     "desc__w_en", "desc__r_en", "ld_req__ready", "ld_resp__valid", "ld_resp__payload",
                     "wb_req__ready", "wb_resp__valid", "wb_resp__payload"):
            getattr(d, name).value = 0
        d.rst.value = 1
        await ClockCycles(d.clk, 3)
        d.rst.value = 0
        await ClockCycles(d.clk, 2)

    # Memory model: both ports, random ready and in-order responses after 1–4 cycles.
    def _wait(self):
        return self.backpressure and self.rng.random() < 0.3

    def _latency(self):
        return 1 + (self.rng.randrange(4) if self.backpressure else 0)

    async def _memory(self):
        d = self.dut
        wb_addr_bits = self.aw - 2
        while True:
            await RisingEdge(d.clk)
            self.cycle += 1
            # Transfers of the cycle that just ended.
            if self.ld_ready and int(d.ld_req__valid.value):
                word = int(d.ld_req__payload.value)
                data = int.from_bytes(self.mem[word * 8:word * 8 + 8], "little")
                due = max(self.cycle - 1 + self._latency(), self.ld_queue[-1][0] + 1 if self.ld_queue else 0)
                self.ld_queue.append((due, data))
            if self.ld_driving is not None and int(d.ld_resp__ready.value):
                self.ld_queue.pop(0)
            if self.wb_ready and int(d.wb_req__valid.value):
                bits = int(d.wb_req__payload.value)
                addr = bits & ((1 << wb_addr_bits) - 1)
                write = (bits >> wb_addr_bits) & 1
                value = (bits >> (wb_addr_bits + 1)) & 0xFFFFFFFF
                if write:
                    self.mem[addr * 4:addr * 4 + 4] = value.to_bytes(4, "little")
                else:
                    data = int.from_bytes(self.mem[addr * 4:addr * 4 + 4], "little")
                    due = max(self.cycle - 1 + self._latency(), self.wb_queue[-1][0] + 1 if self.wb_queue else 0)
                    self.wb_queue.append((due, data))
            if self.wb_driving is not None and int(d.wb_resp__ready.value):
                self.wb_queue.pop(0)
            # Drive the next cycle.
            self.ld_ready = 0 if self._wait() else 1
            self.wb_ready = 0 if self._wait() else 1
            d.ld_req__ready.value = self.ld_ready
            d.wb_req__ready.value = self.wb_ready
            self.ld_driving = self.ld_queue[0][1] if self.ld_queue and self.ld_queue[0][0] <= self.cycle else None
            self.wb_driving = self.wb_queue[0][1] if self.wb_queue and self.wb_queue[0][0] <= self.cycle else None
            d.ld_resp__valid.value = int(self.ld_driving is not None)
            d.ld_resp__payload.value = self.ld_driving or 0
            d.wb_resp__valid.value = int(self.wb_driving is not None)
            d.wb_resp__payload.value = self.wb_driving or 0

    async def _bus(self, port, addr, write=None):
        d = self.dut
        getattr(d, f"{port}__addr").value = addr
        if write is not None:
            getattr(d, f"{port}__w_data").value = write & 0xFFFFFFFF
            getattr(d, f"{port}__w_en").value = 1
        else:
            getattr(d, f"{port}__r_en").value = 1
        while True:
            await RisingEdge(d.clk)
            if int(getattr(d, f"{port}__ack").value):
                value = int(getattr(d, f"{port}__r_data").value)
                break
        getattr(d, f"{port}__w_en").value = 0
        getattr(d, f"{port}__r_en").value = 0
        return value

    async def reg(self, name, value=None):
        return await self._bus("regs", self.region.register(name).offset // 4, value)

    last_desc = None

    async def submit(self, desc):
        from tensornic.rtl import contraction_format as cf
        self.last_desc = desc
        slot = (await self.reg("submitted")) % self.p["queue"]
        while (await self.reg("queue_count")) >= self.p["queue"]:
            await ClockCycles(self.dut.clk, 20)
        for i, w in enumerate(desc.words(self.p["loops"])):
            await self._bus("desc", slot * cf.DESC_SLOT_WORDS + i, w)
        await self.reg("submit", 1)

    async def wait_completed(self, count, limit=400_000):
        for _ in range(limit // 50):
            status = await self.reg("status")
            if status & 2:
                return status
            if (await self.reg("completed")) >= count and not status & 1:
                return status
            await ClockCycles(self.dut.clk, 50)
        core = self.dut.core
        state = {}
        for name in ("validator_state", "producer_state", "loader_state", "real", "cur_live", "in_flight",
                     "ending", "arrived", "room", "v_go", "m_busy", "n_busy", "a_busy", "b_busy"):
            try:
                state[name] = int(getattr(core, name).value)
            except (AttributeError, ValueError):
                pass
        raise AssertionError(f"engine did not finish: completed={await self.reg('completed')}, "
                             f"status={await self.reg('status'):#x}, internal state {state}, "
                             f"last descriptor {self.last_desc}")

    def check_idle(self):
        assert not self.ld_queue and not self.wb_queue, "responses left in flight"


def dense_operand(rng, loops, operand, extents_of, roles, allow_zero=False):
    """Random dense layout for `operand`: its modes in random memory order, random signs (negative strides),
    occasionally a zero stride (broadcast). Returns ({loop index: stride}, elements, start offset)."""
    from tensornic.rtl import contraction_format as cf
    modes = [i for i, lp in enumerate(loops) if lp[1] in cf.OPERAND_ROLES[operand]]
    rng.shuffle(modes)
    strides, size, start = {}, 1, 0
    for i in modes:
        ext = extents_of[i]
        if allow_zero and ext > 1 and rng.random() < 0.15:
            strides[i] = 0
            continue
        sign = -1 if rng.random() < 0.3 else 1
        strides[i] = sign * size
        if sign < 0:
            start += (ext - 1) * size
        size *= ext
    return strides, size, start


def random_case(rng, p, max_elems=900):
    """A random contraction descriptor with operands packed into tensor memory, or None if it did not fit."""
    from tensornic import contraction_model as cm
    from tensornic.rtl import contraction_format as cf
    n = rng.randint(3, min(6, p["loops"]))
    roles = [cf.ROLE_M, cf.ROLE_N, cf.ROLE_K] + [rng.choice([cf.ROLE_M, cf.ROLE_N, cf.ROLE_K]) for _ in range(n - 3)]
    rng.shuffle(roles)
    extents = [rng.choice([1, 2, 3, 4, 5, 7, 9, 12, 17]) for _ in range(n)]
    macs = int(np.prod(extents))
    if macs > 2500 * p["rows"] * p["cols"]:      # keep each run short (small arrays are slow)
        return None
    layout = {}
    for op in "abcd":
        layout[op] = dense_operand(rng, list(zip(extents, roles)), op, extents, roles, allow_zero=op in "ab")
    eb = p["width"] // 8
    sizes = {op: layout[op][1] * (eb if op in "ab" else 4) for op in "abcd"}
    if sum(sizes.values()) + 64 > p["tensor_bytes"] or layout["d"][1] > max_elems:
        return None
    # Pack A, B, C, D at random aligned places, in random order, without overlap.
    order = list("abcd")
    rng.shuffle(order)
    slack = p["tensor_bytes"] - sum(sizes.values()) - 16
    cursor, bases = 0, {}
    for op in order:
        cursor += rng.randrange(0, max(1, slack // 4))
        align = 4 if op in "cd" else eb
        cursor = -(-cursor // align) * align
        bases[op] = cursor
        cursor += sizes[op]
    if cursor > p["tensor_bytes"]:
        return None
    eb_of = {"a": eb, "b": eb, "c": 4, "d": 4}
    loops = []
    for i in range(n):
        s = {op: layout[op][0].get(i, rng.randint(-9, 9)) for op in "abcd"}
        loops.append(cm.Loop(extents[i], roles[i], s["a"], s["b"], s["c"], s["d"]))
    desc = cm.Descriptor(tuple(loops), *(bases[op] + layout[op][2] * eb_of[op] for op in "abcd"),
                         accumulate=rng.random() < 0.5, fence=rng.random() < 0.5)
    return desc


if cocotb is not None:

    _IS_MEMORY_PAIR = _params().get("dut") == "registered_memory"

    @cocotb.test(skip=not _IS_MEMORY_PAIR)
    async def registered_memory_matches_reference(dut):
        from cocotb.triggers import ReadOnly
        p = _params()
        width, depth, ports = p["width"], p["depth"], p["read_ports"]
        lane_bits = p["granularity"] or width
        lanes = width // lane_bits
        abits = len(dut.w_addr)
        rng = random.Random(cocotb.RANDOM_SEED)
        cocotb.start_soon(Clock(dut.clk, 10, "ns").start())
        dut.rst.value = 1
        for name in ("w_addr", "w_data", "w_en", "r_addr"):
            getattr(dut, name).value = 0
        await ClockCycles(dut.clk, 2)
        dut.rst.value = 0
        mem = [0] * depth                     # both implementations start at zero (INITVAL, init=[])
        expected = []                         # per cycle: the words read, due two cycles later
        hot = [rng.randrange(depth) for _ in range(4)]       # a few addresses written and read often
        for cycle in range(4000):
            await RisingEdge(dut.clk)
            w_addr = rng.choice(hot) if rng.random() < 0.3 else rng.randrange(depth)
            w_en = rng.getrandbits(lanes) if rng.random() < 0.6 else 0
            w_data = rng.getrandbits(width)
            r_addrs = [w_addr if rng.random() < 0.15 else rng.choice(hot) if rng.random() < 0.3
                       else rng.randrange(depth) for _ in range(ports)]
            dut.w_addr.value, dut.w_en.value, dut.w_data.value = w_addr, w_en, w_data
            dut.r_addr.value = sum(a << (i * abits) for i, a in enumerate(r_addrs))
            expected.append([mem[a] for a in r_addrs])       # old contents on a same-cycle write
            for lane in range(lanes):
                if w_en >> lane & 1:
                    mask = ((1 << lane_bits) - 1) << (lane * lane_bits)
                    mem[w_addr] = (mem[w_addr] & ~mask) | (w_data & mask)
            await ReadOnly()
            if cycle >= 2:
                want = sum(v << (i * width) for i, v in enumerate(expected[cycle - 2]))
                for ram in ("portable", "ecp5"):
                    got = int(getattr(dut, f"q_{ram}").value)
                    assert got == want, f"cycle {cycle}: {ram} read {got:#x}, expected {want:#x}"

    async def start(dut, **kw):
        tb = TB(dut, **kw)
        await tb.reset()
        return tb

    def fill_random(tb, rng):
        tb.mem[:] = rng.randbytes(len(tb.mem))

    @cocotb.test()
    @cocotb.parametrize(backpressure=[False, True])
    async def random_descriptors(dut, backpressure):
        """Random contractions one at a time, then several queued back to back; memory image must match."""
        from tensornic import contraction_model as cm
        tb = await start(dut, backpressure=backpressure)
        rng = tb.rng
        fill_random(tb, rng)
        expected = np.frombuffer(bytes(tb.mem), dtype=np.uint8).copy()
        done = 0
        cases = 0
        while cases < 6:
            desc = random_case(rng, tb.p)
            if desc is None:
                continue
            cases += 1
            assert cm.validate(desc, tb.p["tensor_bytes"], tb.p["width"]) == 0
            expected = cm.execute(desc, expected, tb.p["width"])
            await tb.submit(desc)
            done += 1
            status = await tb.wait_completed(done)
            assert not status & 2, f"engine rejected a valid descriptor: code {await tb.reg('error_code')}"
            got = np.frombuffer(bytes(tb.mem), dtype=np.uint8)
            bad = np.nonzero(got != expected)[0]
            assert bad.size == 0, f"case {cases} ({desc}): {bad.size} bytes differ, first at {bad[:8]}"
        # Back to back: several descriptors queued without waiting (each its own memory, no fence).
        tb.mem[:] = rng.randbytes(len(tb.mem))
        expected = np.frombuffer(bytes(tb.mem), dtype=np.uint8).copy()
        quarter = tb.p["tensor_bytes"] // 4
        descs = []
        for q in range(3):
            # Small GEMMs with partial tiles in disjoint quarters, the last with accumulate-C.
            mm_, nn, kk = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 40)
            base = q * quarter
            d = cm.gemm(mm_, nn, kk, base_a=base, base_b=base + 400, base_c=base + 1024, base_d=base + 2048,
                        accumulate=q == 2, fence=False)
            descs.append(d)
            expected = cm.execute(d, expected, tb.p["width"])
        for d in descs:
            await tb.submit(d)
        status = await tb.wait_completed(done + len(descs))
        assert not status & 2
        assert bytes(tb.mem) == expected.tobytes(), "queued descriptors: memory differs"
        assert await tb.reg("completed") == done + len(descs)
        await ClockCycles(dut.clk, 20)
        tb.check_idle()

    @cocotb.test()
    async def large_gemm_and_counters(dut):
        """A GEMM spanning several tiles and K chunks; counters add up."""
        from tensornic import contraction_model as cm
        tb = await start(dut, backpressure=True)
        p = tb.p
        rng = tb.rng
        fill_random(tb, rng)
        m_, n_, k_ = p["tile_m"] * 2 + 1, p["tile_n"] + 3, p["chunk_k"] * 2 + 5
        desc = cm.gemm(m_, n_, k_, base_a=0, base_b=4096, base_c=8192, base_d=12288 - 0, accumulate=True)
        if cm.validate(desc, p["tensor_bytes"], p["width"]) != 0:
            m_, n_ = min(m_, 16), min(n_, 16)
            desc = cm.gemm(m_, n_, k_, base_a=0, base_b=4096, base_c=8192, base_d=12288, accumulate=True)
        expected = cm.execute(desc, np.frombuffer(bytes(tb.mem), dtype=np.uint8), p["width"])
        await tb.reg("control", 2)
        await tb.submit(desc)
        status = await tb.wait_completed(1)
        assert not status & 2
        assert bytes(tb.mem) == expected.tobytes()
        macs = await tb.reg("mac_count_lo") | (await tb.reg("mac_count_hi")) << 32
        assert macs == m_ * n_ * k_
        busy = await tb.reg("busy_cycles_lo")
        assert busy >= macs // (p["rows"] * p["cols"])
        dut._log.info(f"{m_}x{n_}x{k_}: busy {busy}, utilization {macs / (p['rows'] * p['cols'] * busy):.3f}, "
                      f"stalls operand {await tb.reg('stall_operand')} drain {await tb.reg('stall_drain')} "
                      f"bus {await tb.reg('stall_bus')}")

    @cocotb.test()
    async def bad_descriptors(dut):
        """Invalid descriptors are rejected with the model's code, before any memory access; the engine
        halts until reset through `control`, then runs the next descriptor."""
        from tensornic import contraction_model as cm
        from tensornic.rtl import contraction_format as cf
        tb = await start(dut, backpressure=True)
        p = tb.p
        rng = tb.rng
        fill_random(tb, rng)
        size = p["tensor_bytes"]
        good = cm.gemm(3, 4, 5, base_a=0, base_b=64, base_d=256)
        bad = [
            cm.gemm(3, 4, 5, base_a=0, base_b=64, base_d=size - 16),                 # D out of range
            cm.gemm(3, 4, 5, base_a=size - 4, base_b=64, base_d=256),                # A out of range
            cm.gemm(3, 4, 5, base_a=0, base_b=64, base_d=258),                       # misaligned D
            cm.Descriptor(good.loops[:2] + (cm.Loop(0, cf.ROLE_K, 1, 4),), 0, 64, 0, 256),   # zero extent
            cm.Descriptor(good.loops[:2] + (cm.Loop(5, cf.ROLE_K, 1, 1 << 28),), 0, 64, 0, 256),  # stride overflow
            cm.Descriptor(good.loops[:2] + (cm.Loop(5, cf.ROLE_K, -1, 4),), 0, 64, 0, 256),  # negative A
            cm.Descriptor(good.loops[:2] + (cm.Loop(5, 3, 1, 4),), 0, 64, 0, 256),          # bad role
            cm.gemm(3, 4, 5, base_a=0, base_b=64, base_c=size, base_d=256, accumulate=True),  # C range
        ]
        for i, d in enumerate(bad):
            code = cm.validate(d, size, p["width"])
            assert code != 0, i
            image = bytes(tb.mem)
            await tb.submit(d)
            await tb.submit(good)                 # queued behind the bad one: must not run
            for _ in range(100):
                if (await tb.reg("status")) & 2:
                    break
                await ClockCycles(dut.clk, 10)
            assert (await tb.reg("status")) & 2, f"descriptor {i} was not rejected"
            assert await tb.reg("error_code") == code, (i, await tb.reg("error_code"), code)
            await ClockCycles(dut.clk, 200)
            assert bytes(tb.mem) == image, f"descriptor {i}: memory changed"
            assert not tb.ld_queue and not tb.wb_queue
            await tb.reg("control", cf.CONTROL_RESET)
            await ClockCycles(dut.clk, 30)
            assert (await tb.reg("status")) == 0
        # After the errors, the engine still works.
        expected = cm.execute(good, np.frombuffer(bytes(tb.mem), dtype=np.uint8), p["width"])
        before = await tb.reg("completed")
        await tb.submit(good)
        await tb.wait_completed(before + 1)
        assert bytes(tb.mem) == expected.tobytes()
