"""amaranth.sim unit tests of the contraction engine's parts: the MAC cell, a small array with its drain,
the strided address generator; and the golden model against a plain-Python statement of the semantics."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from tensornic import contraction_model as cm
from tensornic.rtl import contraction_format as cf
from tensornic.rtl.address_gen import AddressGenerator
from tensornic.rtl.systolic import MacCell, SystolicArray


def run(dut, bench, cycles_hint=None):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def to_signed(v, bits):
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


# -- cell -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width,acc_width", [(8, 32), (16, 32), (8, 20)])
def test_cell_accumulates_and_wraps(width, acc_width):
    rng = random.Random(width * 100 + acc_width)
    dut = MacCell(width, acc_width, mult="portable")
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    # Extremes first so the accumulator wraps early.
    pairs = [(lo, lo)] * 40 + [(rng.randint(lo, hi), rng.randint(lo, hi)) for _ in range(60)]
    firsts = {0, 30, 75}

    async def bench(ctx):
        total, expected = 0, []
        for t, (a, b) in enumerate(pairs + [(0, 0)] * 4):
            ctx.set(dut.a_in, a)
            ctx.set(dut.b_in, b)
            ctx.set(dut.first_in, int(t in firsts or t == len(pairs)))
            if t in firsts or t == len(pairs):
                expected.append(total)
            if t < len(pairs):
                total += a * b
            await ctx.tick()
            assert ctx.get(dut.a_out) == a and ctx.get(dut.b_out) == b    # pass-through is one cycle
        await ctx.tick().repeat(3)
        mask = (1 << acc_width) - 1
        assert ctx.get(dut.acc) == total & mask
        # The differences of successive shadows are the interval sums modulo 2^acc_width.
        assert ctx.get(dut.shadow) == expected[-1] & mask
    run(dut, bench)


def test_cell_capture_timing():
    dut = MacCell(8, 32, mult="portable")

    async def bench(ctx):
        ctx.set(dut.a_in, 3)
        ctx.set(dut.b_in, 5)
        await ctx.tick().repeat(6)          # acc = 15·k
        ctx.set(dut.first_in, 1)
        ctx.set(dut.a_in, 7)
        before = None
        for t in range(4):
            await ctx.tick()
            ctx.set(dut.first_in, 0)
            if ctx.get(dut.capture):
                before = ctx.get(dut.acc)    # value being captured this cycle (excludes the 7·5 product)
                await ctx.tick()
                assert ctx.get(dut.shadow) == before
                assert before % 15 == 0
                assert ctx.get(dut.acc) == before + 35
                break
        assert before is not None, "no capture within the cell latency"
    run(dut, bench)


# -- array ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 3), (3, 2)])
def test_array_intervals(rows, cols):
    """Feed random A/B intervals of varying length (≥ rows) and check every drained interval sum."""
    rng = np.random.default_rng(rows * 10 + cols)
    dut = SystolicArray(rows, cols, 8, 32, mult="portable")
    lengths = [rows + int(rng.integers(0, 5)) for _ in range(5)]
    tiles = [(rng.integers(-128, 128, (rows, n)), rng.integers(-128, 128, (n, cols))) for n in lengths]

    async def bench(ctx):
        drained = [[] for _ in range(cols)]
        schedule = []
        for a, b in tiles:
            for k in range(a.shape[1]):
                schedule.append((a[:, k], b[k, :], k == 0))
        schedule.append((np.zeros(rows, int), np.zeros(cols, int), True))      # close the last interval
        schedule += [(np.zeros(rows, int), np.zeros(cols, int), False)] * rows
        for av, bv, first in schedule + [(np.zeros(rows, int), np.zeros(cols, int), False)] * (rows + cols + 8):
            for i in range(rows):
                ctx.set(dut.a[i], int(av[i]))
            for j in range(cols):
                ctx.set(dut.b[j], int(bv[j]))
            ctx.set(dut.first, int(first))
            await ctx.tick()
            for j in range(cols):
                if ctx.get(dut.out_valid[j]):
                    drained[j].append(ctx.get(dut.out_data[j]))
        # Each column gives rows values per interval: the idle interval before the first tile, then tiles.
        for j in range(cols):
            assert len(drained[j]) == rows * (len(tiles) + 1)
            values = np.array(drained[j], dtype=np.int64).reshape(-1, rows)
            diffs = (values[1:] - values[:-1]) & 0xFFFFFFFF
            for t, (a, b) in enumerate(tiles):
                assert list(diffs[t]) == list((a @ b)[:, j] & 0xFFFFFFFF), (t, j)
    run(dut, bench)


# -- address generator ------------------------------------------------------------------------------------

def random_descriptor(rng, loops=6, max_extent=5):
    out = []
    for _ in range(loops):
        out.append(cm.Loop(rng.randint(1, max_extent), rng.choice([cf.ROLE_K, cf.ROLE_M, cf.ROLE_N]),
                           *(rng.randint(-40, 40) for _ in range(4))))
    return cm.Descriptor(tuple(out))


async def load(ctx, dut, desc, jumps):
    """Extents and roles as inputs, jumps through the write port (as the validator does)."""
    for i, lp in enumerate(desc.loops):
        ctx.set(dut.extent[i], lp.extent)
        ctx.set(dut.role[i], lp.role)
        ctx.set(dut.jump_we, 1)
        ctx.set(dut.jump_addr, i)
        for s in range(cf.SLOTS):
            ctx.set(dut.jump_data[s], jumps[i][s])
        await ctx.tick()
    ctx.set(dut.jump_we, 0)
    await ctx.tick()


@pytest.mark.parametrize("seed", range(6))
def test_address_generator_matches_model(seed):
    rng = random.Random(seed)
    loops = 8
    desc = random_descriptor(rng, loops=loops, max_extent=4)
    if seed == 0:   # unit inner strides: rem counts down the innermost loop of each role
        desc = cm.Descriptor((cm.Loop(3, cf.ROLE_M, 10, 0, 7, 7), cm.Loop(5, cf.ROLE_M, 1, 0, 1, 1),
                              cm.Loop(1, cf.ROLE_M, 9, 9, 9, 9), cm.Loop(4, cf.ROLE_K, 1, 1),
                              cm.Loop(2, cf.ROLE_N, 0, 1, 1, -1)))
        loops = len(desc.loops)
    jumps = cm.jumps(desc)
    dut = AddressGenerator(loops=loops, slots=cf.SLOTS, offset_bits=20, rem_bits=4)

    async def bench(ctx):
        await load(ctx, dut, desc, jumps)
        for role in (cf.ROLE_M, cf.ROLE_N, cf.ROLE_K):
            slots = cf.ROLE_SLOTS[role]
            expected = [cm.role_offsets(desc, role, op) for op in slots]
            size = len(expected[0])
            ctx.set(dut.sel, role)
            ctx.set(dut.restart, 1)
            await ctx.tick()
            ctx.set(dut.restart, 0)
            for rep in range(2):            # a second pass checks the wrap to index 0
                for e in range(size):
                    assert not ctx.get(dut.valid)       # a step takes two cycles: deciding, then valid
                    await ctx.tick()
                    assert ctx.get(dut.valid)
                    for s, op in enumerate(slots):
                        assert ctx.get(dut.offset[s]) == expected[s][e], (role, e, op)
                        # rem: contiguous run length from e in slot s (saturated at 15)
                        run_len = 1
                        while e + run_len < size and expected[s][e + run_len] == expected[s][e] + run_len:
                            run_len += 1
                        rem = ctx.get(dut.rem[s])
                        assert 1 <= rem <= run_len, (role, e, op, rem, run_len)
                    assert ctx.get(dut.last) == (e == size - 1)
                    ctx.set(dut.step, 1)
                    await ctx.tick()
                    ctx.set(dut.step, 0)
            # Interleaving another role does not disturb this one.
        ctx.set(dut.sel, cf.ROLE_M)
        await ctx.tick()
    run(dut, bench)


def test_address_generator_rem_exact():
    desc = cm.Descriptor((cm.Loop(2, cf.ROLE_K, 100, 1), cm.Loop(6, cf.ROLE_K, 1, 3)))
    jumps = cm.jumps(desc)
    dut = AddressGenerator(loops=2, slots=3, offset_bits=16, rem_bits=3)

    async def bench(ctx):
        await load(ctx, dut, desc, jumps)
        ctx.set(dut.sel, cf.ROLE_K)
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        seen = []
        ctx.set(dut.step, 1)                      # held high: honoured only while `valid`
        while len(seen) < 12:
            if ctx.get(dut.valid):
                seen.append((ctx.get(dut.offset[0]), ctx.get(dut.rem[0]), ctx.get(dut.rem[1])))
            await ctx.tick()
        assert [s[0] for s in seen] == [0, 1, 2, 3, 4, 5, 100, 101, 102, 103, 104, 105]
        assert [s[1] for s in seen] == [6, 5, 4, 3, 2, 1] * 2
        assert all(s[2] == 1 for s in seen)       # stride 3 in slot 1: not contiguous
    run(dut, bench)


# -- golden model ------------------------------------------------------------------------------------------

def naive_execute(desc, mem, width):
    """Element by element over every (m, n, k) multi-index: the statement of the semantics."""
    import itertools
    mem = bytearray(mem)
    eb = width // 8

    def read(addr, nbytes):
        return int.from_bytes(mem[addr:addr + nbytes], "little", signed=True)

    def indices(role):
        loops = [lp for lp in desc.loops if lp.role == role]
        return [dict(zip(map(id, loops), idx)) for idx in itertools.product(*(range(lp.extent) for lp in loops))], loops

    ms, mloops = indices(cf.ROLE_M)
    ns, nloops = indices(cf.ROLE_N)
    ks, kloops = indices(cf.ROLE_K)

    def off(op, *maps_loops):
        return sum(mp[id(lp)] * lp.stride(op) for mp, lps in maps_loops for lp in lps)

    results = {}
    for mi in ms:
        for ni in ns:
            acc = 0
            for ki in ks:
                a = read(desc.base_a + eb * off("a", (mi, mloops), (ki, kloops)), eb)
                b = read(desc.base_b + eb * off("b", (ki, kloops), (ni, nloops)), eb)
                acc += a * b
            if desc.accumulate:
                acc += read(desc.base_c + 4 * off("c", (mi, mloops), (ni, nloops)), 4)
            results[desc.base_d + 4 * off("d", (mi, mloops), (ni, nloops))] = acc & 0xFFFFFFFF
    for addr, v in results.items():
        mem[addr:addr + 4] = v.to_bytes(4, "little")
    return bytes(mem)


@pytest.mark.parametrize("width", [8, 16])
def test_model_matches_naive(width):
    rng = np.random.default_rng(width)
    mem = rng.integers(0, 256, 4096, dtype=np.uint8)
    mem[:64] = 0x80   # extremes
    eb = width // 8
    desc = cm.Descriptor((
        cm.Loop(3, cf.ROLE_M, stride_a=-5, stride_c=1, stride_d=12),
        cm.Loop(2, cf.ROLE_K, stride_a=1, stride_b=-7),
        cm.Loop(4, cf.ROLE_N, stride_b=1, stride_c=3, stride_d=2),
        cm.Loop(3, cf.ROLE_K, stride_a=2, stride_b=0),
        cm.Loop(2, cf.ROLE_M, stride_a=40, stride_c=20, stride_d=1),
    ), base_a=200 * eb, base_b=300 * eb, base_c=2048, base_d=3072, accumulate=True)
    assert cm.validate(desc, 4096, width) == cf.EngineStatus.OK
    assert cm.execute(desc, mem, width).tobytes() == naive_execute(desc, mem.tobytes(), width)


def test_model_wraps_modulo_2_32():
    k = 70000   # 70000·16384 > 2^30: the sum wraps
    mem = np.zeros(1 << 18, dtype=np.uint8)
    mem[:k] = 0x80
    mem[k:2 * k] = 0x80
    desc = cm.gemm(1, 1, k, base_a=0, base_b=k, base_d=1 << 17)
    # K exceeds one loop's extent: split it in two loops.
    desc = cm.Descriptor((cm.Loop(1, cf.ROLE_M), cm.Loop(1, cf.ROLE_N), cm.Loop(7, cf.ROLE_K, 10000, 10000),
                          cm.Loop(10000, cf.ROLE_K, 1, 1)), base_a=0, base_b=k, base_d=1 << 17)
    out = cm.execute(desc, mem, 8)
    assert int(out[1 << 17:(1 << 17) + 4].view("<u4")[0]) == (k * 16384) % (1 << 32)


def test_model_validation_codes():
    ok = cm.gemm(4, 4, 4, base_a=0, base_b=64, base_d=128)
    assert cm.validate(ok, 256, 8) == cf.EngineStatus.OK
    assert cm.validate(cm.gemm(4, 4, 4, base_a=0, base_b=64, base_d=130), 256, 8) == cf.EngineStatus.MISALIGNED
    assert cm.validate(cm.gemm(4, 4, 4, base_a=0, base_b=64, base_d=196), 256, 8) == cf.EngineStatus.D_RANGE
    assert cm.validate(cm.gemm(4, 4, 4, base_a=250, base_b=64, base_d=128), 256, 8) == cf.EngineStatus.A_RANGE
    zero = cm.Descriptor(ok.loops[:2] + (cm.Loop(0, cf.ROLE_K, 1, 1),), 0, 64, 0, 128)
    assert cm.validate(zero, 256, 8) == cf.EngineStatus.ZERO_EXTENT
    huge = cm.Descriptor(ok.loops[:2] + (cm.Loop(2, cf.ROLE_K, 1, 1 << 20),), 0, 64, 0, 128)
    assert cm.validate(huge, 256, 8) == cf.EngineStatus.STRIDE_RANGE
    neg = cm.Descriptor(ok.loops[:2] + (cm.Loop(4, cf.ROLE_K, -1, 1),), 0, 64, 0, 128)
    assert cm.validate(neg, 256, 8) == cf.EngineStatus.A_RANGE
    words = ok.words(8)
    assert cm.Descriptor.from_words(words, 8).words(8) == words


# -- emulator's engine --------------------------------------------------------------------------------------

def test_engine_emulator_region():
    from tensornic.engine import engine_sim_config
    from tensornic.engine_emulator import EngineRegion
    from tensornic.link_model import MemoryRegion
    from tensornic.rtl import memory_map as mm
    config = engine_sim_config(tensor_bytes=64 * 1024)
    mmap = mm.soc_memory_map(config)
    regs = EngineRegion(mmap.region("engine"), config)
    desc_mem = MemoryRegion("engine_desc", mmap.region("engine_desc").base, mmap.region("engine_desc").size)
    tensor = MemoryRegion("tensor", mmap.region("tensor").base, config.tensor_bytes)
    regs.attach(desc_mem, tensor)
    rng = np.random.default_rng(5)
    tensor.data[:8192] = rng.integers(0, 256, 8192, dtype=np.uint8).tobytes()
    image = np.frombuffer(bytes(tensor.data), np.uint8)
    reg = {r.name: r.offset for r in mmap.region("engine").registers}

    def submit(desc):
        slot = int.from_bytes(regs.read(reg["submitted"], 4), "little") % config.engine_queue
        desc_mem.write(slot * cf.DESC_SLOT_WORDS * 4, np.array(desc.words(config.engine_loops), "<u4").tobytes())
        regs.write(reg["submit"], b"\1\0\0\0")

    def read(name):
        return int.from_bytes(regs.read(reg[name], 4), "little")

    good = cm.gemm(7, 9, 11, base_a=0, base_b=1024, base_d=4096)
    submit(good)
    assert bytes(tensor.data) == cm.execute(good, image).tobytes()
    assert read("completed") == 1 and read("mac_count_lo") == 7 * 9 * 11 and read("status") == 0
    submit(cm.gemm(7, 9, 11, base_a=0, base_b=1024, base_d=config.tensor_bytes - 8))
    assert read("status") & cf.STATUS_ERROR and read("error_code") == cf.EngineStatus.D_RANGE
    assert read("error_index") == 1
    regs.write(reg["control"], cf.CONTROL_RESET.to_bytes(4, "little"))
    assert read("status") == 0
