"""Fp32Adder test bench: the gateware against Berkeley SoftFloat (softfloatpy, RISC-V NaN rules), bit for bit.

- Stimulus (`adder_vectors`): every pair of operand classes (zero, subnormal, smallest normal, normal,
  largest normal, Inf, quiet and signalling NaN) with every sign combination; exponent differences 0…40;
  cancellation (opposite signs, equal exponents, nearly equal significands); exact rounding ties (the bits
  shifted out are exactly one half) in addition and subtraction, normal and subnormal; overflow; plus
  uniformly random patterns. The same seed always gives the same vectors.
- cocotb (two lanes): random idle gaps and backpressure in every combination, long stalls, the latency
  constant, sustained throughput, nothing lost or duplicated, nothing left in flight (2·10⁴ vectors).
- Native driver (sim/stream_runner.py): 10⁵ vectors in CI, 10⁶ in the slow test and the bench; 0 mismatches.
"""

import json
import zlib

import cocotb
import numpy as np
import pytest

from tensornic.rtl.fp32_add import FP32_ADD_LATENCY, Fp32Adder
from tensornic.sim import verilator
from tensornic.sim.stream_runner import CocotbStreamBench, StreamDriver, pack, unpack

TOP = "fp32_add"
TEST_MODULE = "tensornic.sim.test_fp32_add"
COCOTB_LANES = 2
COCOTB_VECTORS = 20_000
NATIVE_VECTORS = 100_000
FULL_VECTORS = 1_000_000


# --- reference and stimulus (also used by tests/test_formats.py and the bench) -------------------------------

def softfloat_add(a_bits, b_bits) -> np.ndarray:
    """f32_add of SoftFloat (RISC-V specialization) on binary32 patterns, round to nearest even."""
    import softfloatpy as sf
    sf.set_rounding_mode(sf.RoundingMode.NEAR_EVEN)
    from_bits = sf.Float32.from_bytes
    out = np.empty(len(a_bits), dtype=np.uint32)
    for n, (a, b) in enumerate(zip(np.asarray(a_bits, np.uint32).tolist(), np.asarray(b_bits, np.uint32).tolist())):
        total = sf.f32_add(from_bits(a.to_bytes(4, "big")), from_bits(b.to_bytes(4, "big")))
        out[n] = int.from_bytes(total.to_bytes(), "big")
    return out


#: Operand classes: name → function(rng, n) → binary32 magnitudes (sign bit clear).
def _class_values():
    def fields(exp, frac):
        return ((np.asarray(exp, np.uint32) << 23) | np.asarray(frac, np.uint32)).astype(np.uint32)

    def frac(rng, n):
        return rng.integers(0, 1 << 23, n, dtype=np.uint32)

    return {
        "zero": lambda rng, n: np.zeros(n, np.uint32),
        "subnormal": lambda rng, n: fields(0, rng.integers(1, 1 << 23, n, dtype=np.uint32)),
        "min_normal": lambda rng, n: fields(rng.integers(1, 3, n), frac(rng, n)),
        "normal": lambda rng, n: fields(rng.integers(1, 255, n), frac(rng, n)),
        "max_normal": lambda rng, n: fields(rng.integers(252, 255, n),
                                            (1 << 23) - 1 - rng.integers(0, 4, n, dtype=np.uint32)),
        "inf": lambda rng, n: np.full(n, 0x7F80_0000, np.uint32),
        "qnan": lambda rng, n: fields(255, (1 << 22) | rng.integers(0, 1 << 22, n, dtype=np.uint32)),
        "snan": lambda rng, n: fields(255, rng.integers(1, 1 << 22, n, dtype=np.uint32)),
    }


def _signs(rng, n):
    return (rng.integers(0, 2, n, dtype=np.uint32) << 31).astype(np.uint32)


def adder_vectors(n: int, seed: int = 0):
    """`n` operand pairs (a_bits, b_bits) as uint32 arrays; see the module docstring for what they cover."""
    rng = np.random.default_rng(seed)
    a_parts, b_parts = [], []

    def add(a, b):
        a_parts.append(np.asarray(a, np.uint32))
        b_parts.append(np.asarray(b, np.uint32))

    classes = _class_values()
    # Every class pair with every sign pair, a few of each.
    per_pair = max(1, n // 10 // (len(classes) ** 2))
    for make_a in classes.values():
        for make_b in classes.values():
            add(make_a(rng, per_pair) | _signs(rng, per_pair), make_b(rng, per_pair) | _signs(rng, per_pair))

    def normal_pair(count, diff, frac_b=None):
        exp_a = rng.integers(1, 255, count)
        exp_b = exp_a - diff
        ok = exp_b >= 0                                      # below 0: b is a subnormal-range partner
        exp_b = np.where(ok, exp_b, 0)
        fa = rng.integers(0, 1 << 23, count, dtype=np.uint32)
        fb = rng.integers(0, 1 << 23, count, dtype=np.uint32) if frac_b is None else frac_b
        a = (exp_a.astype(np.uint32) << 23) | fa
        b = (exp_b.astype(np.uint32) << 23) | fb
        return a | _signs(rng, count), b | _signs(rng, count)

    # Exponent differences 0..40 (beyond 26 the small operand is all sticky).
    per_diff = max(1, n // 5 // 41)
    for diff in range(41):
        add(*normal_pair(per_diff, diff))
    # Cancellation: opposite signs, equal exponents, significands equal but for up to 23 low bits.
    count = max(1, n // 10)
    a = rng.integers(0, 0x7F80_0000, count, dtype=np.uint32)
    low_bits = rng.integers(0, 24, count).astype(np.uint32)
    noise = rng.integers(0, 1 << 23, count, dtype=np.uint32) & ((np.uint32(1) << low_bits) - np.uint32(1))
    sign = _signs(rng, count)
    add(a | sign, (a ^ noise) | (sign ^ np.uint32(0x8000_0000)))
    # Rounding ties: the bits of b shifted out are exactly 100…0 (both parities of the kept bits).
    per_diff = max(1, n // 10 // 25)
    for diff in range(1, 26):
        if diff <= 23:
            fb = rng.integers(0, 1 << 23, per_diff, dtype=np.uint32)
            fb = (fb & ~np.uint32((1 << diff) - 1)) | np.uint32(1 << (diff - 1))
        else:                                                # b's hidden bit alone is the half (diff 24)
            fb = np.zeros(per_diff, np.uint32)
        add(*normal_pair(per_diff, diff, fb))
    # Ties and near-ties in the subnormal range and across the subnormal/normal boundary.
    count = max(1, n // 20)
    a = rng.integers(0, 0x0100_0000, count, dtype=np.uint32)
    b = rng.integers(0, 0x0100_0000, count, dtype=np.uint32)
    add(a | _signs(rng, count), b | _signs(rng, count))
    # Overflow: large operands of equal sign.
    count = max(1, n // 40)
    a = (rng.integers(250, 255, count).astype(np.uint32) << 23) | rng.integers(0, 1 << 23, count, dtype=np.uint32)
    b = (rng.integers(250, 255, count).astype(np.uint32) << 23) | rng.integers(0, 1 << 23, count, dtype=np.uint32)
    sign = _signs(rng, count)
    add(a | sign, b | sign)

    structured_a, structured_b = np.concatenate(a_parts), np.concatenate(b_parts)
    if len(structured_a) > n:
        keep = rng.choice(len(structured_a), n, replace=False)
        structured_a, structured_b = structured_a[keep], structured_b[keep]
    # The rest: uniformly random patterns, half of them with nearby exponents.
    rest = n - len(structured_a)
    a = rng.integers(0, 1 << 32, rest, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 1 << 32, rest, dtype=np.uint64).astype(np.uint32)
    near = rng.random(rest) < 0.5
    shifted = ((((a >> 23) & 0xFF).astype(np.int64) + rng.integers(-3, 4, rest)) & 0xFF).astype(np.uint32)
    b = np.where(near, (b & 0x807F_FFFF) | (shifted << 23), b).astype(np.uint32)
    a = np.concatenate([structured_a, a])
    b = np.concatenate([structured_b, b])
    # Shuffle, and swap the operands of half the pairs (the adder orders them itself).
    order = rng.permutation(n)
    a, b = a[order], b[order]
    swap = rng.random(n) < 0.5
    return np.where(swap, b, a).astype(np.uint32), np.where(swap, a, b).astype(np.uint32)


def check_sums(a, b, sums, reference=None):
    """Assert `sums` == SoftFloat's a + b bit for bit; the message lists the first mismatches."""
    expected = softfloat_add(a, b) if reference is None else reference
    bad = np.nonzero(np.asarray(sums, np.uint32) != expected)[0]
    if len(bad):
        lines = [f"{a[i]:#010x} + {b[i]:#010x}: got {int(sums[i]):#010x}, SoftFloat {expected[i]:#010x}"
                 for i in bad[:10]]
        raise AssertionError(f"{len(bad)} of {len(a)} sums differ from SoftFloat:\n" + "\n".join(lines))


def run_native(count: int, *, seed: int, lanes: int = 1, idle=0.2, stall=0.3, long_stall=0.0005):
    """`count` adder vectors through the native stream driver with idle gaps and backpressure; returns
    (vectors checked, driver run). Raises AssertionError on any mismatch or stream-rule violation."""
    driver = StreamDriver(lambda: Fp32Adder(lanes), name=TOP, params={"lanes": lanes})
    beats = -(-count // lanes)
    a, b = adder_vectors(beats * lanes, seed)
    fields = {}
    for lane in range(lanes):
        fields[(lane, "a")] = a[lane::lanes]
        fields[(lane, "b")] = b[lane::lanes]
    run = driver.run(pack(driver.in_layout, fields), beats, seed=seed, idle=idle, stall=stall,
                     long_stall=long_stall).check()
    out = unpack(driver.out_layout, run.outputs)
    sums = np.empty(beats * lanes, np.uint32)
    for lane in range(lanes):
        sums[lane::lanes] = out[(lane,)].astype(np.uint32)
    check_sums(a, b, sums)
    return len(a), run


# --- pytest side ---------------------------------------------------------------------------------------------

def _run_cocotb(testcase, **knobs):
    knobs.setdefault("seed", zlib.crc32(json.dumps([testcase, knobs], sort_keys=True).encode()))
    params = {"lanes": COCOTB_LANES}
    verilator.run_cocotb(lambda: Fp32Adder(COCOTB_LANES), name=TOP, test_module=TEST_MODULE, params=params,
                         knobs=knobs, testcase=testcase, seed=knobs["seed"])


def test_fp32_add_cocotb():
    _run_cocotb(None)


def test_fp32_add_native():
    checked, run = run_native(NATIVE_VECTORS, seed=1)
    assert checked >= NATIVE_VECTORS
    # Without gaps or stalls the pipeline takes one vector per cycle.
    _, run = run_native(2000, seed=2, idle=0.0, stall=0.0, long_stall=0.0)
    assert run.busy_cycles == 2000 + FP32_ADD_LATENCY, run
    assert run.first_out_cycle == FP32_ADD_LATENCY


@pytest.mark.slow
def test_fp32_add_native_million():
    checked, _ = run_native(FULL_VECTORS, seed=1_000_000)
    assert checked == FULL_VECTORS


# --- cocotb side ---------------------------------------------------------------------------------------------

def _lane_pack(pairs):
    """Beat payload integers from a list of per-lane (a, b) pattern lists."""
    value = 0
    for lane, (a, b) in enumerate(pairs):
        value |= (int(a) | (int(b) << 32)) << (64 * lane)
    return value


def _lane_unpack(payload, lanes):
    return [(payload >> (32 * lane)) & 0xFFFF_FFFF for lane in range(lanes)]


async def _bench(dut):
    params = verilator.cocotb_params()
    tb = CocotbStreamBench(dut, seed=params["seed"])
    await tb.reset()
    return tb, params


async def _traffic(tb, count, seed):
    lanes = COCOTB_LANES
    a, b = adder_vectors(count * lanes, seed)
    beats = [_lane_pack([(a[n * lanes + lane], b[n * lanes + lane]) for lane in range(lanes)])
             for n in range(count)]
    expected = softfloat_add(a, b)
    cocotb.start_soon(tb.send(beats))
    received = await tb.wait_for(count, cycles=50 * count + 1000)
    sums = np.array([s for payload in received for s in _lane_unpack(payload, lanes)], np.uint32)
    check_sums(a, b, sums, expected)
    await tb.finish(count)


@cocotb.test()
@cocotb.parametrize(gaps=[0.0, 0.3], backpressure=[0.0, 0.4])
async def stream_traffic(dut, gaps, backpressure):
    """Vectors with and without idle gaps and backpressure (plus long stalls with both)."""
    tb, params = await _bench(dut)
    tb.gaps, tb.backpressure = gaps, backpressure
    tb.long_stalls = 0.002 if gaps and backpressure else 0.0
    await _traffic(tb, COCOTB_VECTORS // COCOTB_LANES // 4, params["seed"] + int(gaps * 10 + backpressure * 100))


@cocotb.test()
async def latency_and_throughput(dut):
    """A lone vector comes out FP32_ADD_LATENCY cycles after it went in; a burst flows at one per cycle."""
    tb, _ = await _bench(dut)
    await tb.send([_lane_pack([(0x3F80_0000, 0x3F80_0000)] * COCOTB_LANES)])
    await tb.wait_for(1)
    assert tb.received[0][0] - tb.sent[0] == FP32_ADD_LATENCY, (tb.sent, tb.received)
    assert _lane_unpack(tb.received[0][1], COCOTB_LANES) == [0x4000_0000] * COCOTB_LANES
    tb.received.clear()
    tb.sent.clear()
    burst = [_lane_pack([(n, 0)] * COCOTB_LANES) for n in range(200)]
    await tb.send(burst)
    await tb.wait_for(200)
    assert tb.sent[-1] - tb.sent[0] == 199, "the adder did not take one vector per cycle"
    assert tb.received[-1][0] - tb.received[0][0] == 199, "the adder did not deliver one sum per cycle"
    assert [_lane_unpack(p, COCOTB_LANES)[0] for _, p in tb.received] == list(range(200))
    await tb.finish(200)


@cocotb.test()
async def full_stall_loses_nothing(dut):
    """With the output stalled the adder fills and stops taking input; on release every sum comes out once,
    in order."""
    tb, params = await _bench(dut)
    tb.stalled = True
    a, b = adder_vectors(60 * COCOTB_LANES, params["seed"])
    beats = [_lane_pack([(a[n * COCOTB_LANES + lane], b[n * COCOTB_LANES + lane]) for lane in range(COCOTB_LANES)])
             for n in range(60)]
    sender = cocotb.start_soon(tb.send(beats))
    from cocotb.triggers import ClockCycles
    await ClockCycles(dut.clk, 100)
    assert len(tb.sent) == FP32_ADD_LATENCY + 1 or len(tb.sent) == FP32_ADD_LATENCY, \
        f"{len(tb.sent)} vectors taken into a stalled {FP32_ADD_LATENCY}-stage pipeline"
    assert not tb.received
    tb.stalled = False
    await sender
    received = await tb.wait_for(60)
    sums = np.array([s for payload in received for s in _lane_unpack(payload, COCOTB_LANES)], np.uint32)
    check_sums(a, b, sums)
    await tb.finish(60)
