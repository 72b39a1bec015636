"""Golden models of tensornic.formats against independent references, bit for bit.

- FP32 addition against Berkeley SoftFloat (softfloatpy: f32_add, RISC-V specialization, round to nearest
  even) on the class-covering vectors of the RTL bench, plus the IEEE special cases written out by hand.
- BF16 against ml_dtypes.bfloat16 (converted from float32 only: float64 → bf16 would round twice): every
  upper half with the decisive lower halves (ties both ways, just below and above, zero, all ones), and
  BF16 → FP32 for all 65536 patterns.
- MXINT8 against hand-worked blocks: ties at every position, saturation at 127.5, zero blocks, subnormal-
  only blocks, a huge outlier among tiny values, Inf, NaN, −0, the exponent range ends.
- Small amaranth.sim checks of gateware pieces: the leading-zero counter and the latency constants.
"""

import numpy as np
import pytest

from tensornic import formats
from tensornic.formats import (bf16_decode, bf16_encode, fp32_add, mxint8_decode, mxint8_encode,
                               mxint8_from_wire, mxint8_to_wire)
from tensornic.rtl.format_constants import FP32_CANONICAL_NAN, MX_SCALE_NAN


def f32(*bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)


def bits_of(x):
    return np.asarray(x, dtype=np.float32).view(np.uint32)


# --- FP32 addition -------------------------------------------------------------------------------------------

def test_fp32_add_matches_softfloat():
    from tensornic.sim.test_fp32_add import adder_vectors, softfloat_add
    a, b = adder_vectors(200_000, seed=11)
    expected = softfloat_add(a, b)
    got = bits_of(fp32_add(a.view(np.float32), b.view(np.float32)))
    bad = np.nonzero(got != expected)[0]
    assert not len(bad), [(hex(a[i]), hex(b[i]), hex(got[i]), hex(expected[i])) for i in bad[:5]]


def test_fp32_add_special_cases_by_hand():
    cases = [
        # a, b, a + b
        (0x3F80_0000, 0xBF80_0000, 0x0000_0000),    # 1 + (−1) = +0
        (0x8000_0000, 0x8000_0000, 0x8000_0000),    # (−0) + (−0) = −0
        (0x8000_0000, 0x0000_0000, 0x0000_0000),    # (−0) + (+0) = +0
        (0x0000_0001, 0x8000_0001, 0x0000_0000),    # smallest subnormals cancel to +0
        (0x8000_0001, 0x8000_0001, 0x8000_0002),    # subnormal sum, exact
        (0x007F_FFFF, 0x0000_0001, 0x0080_0000),    # largest subnormal + ulp = smallest normal
        (0x7F80_0000, 0xFF80_0000, FP32_CANONICAL_NAN),   # Inf + (−Inf)
        (0xFF80_0000, 0x3F80_0000, 0xFF80_0000),    # −Inf + 1
        (0xFFC1_2345, 0x3F80_0000, FP32_CANONICAL_NAN),   # negative NaN with payload → canonical
        (0x7F80_0001, 0x7F80_0000, FP32_CANONICAL_NAN),   # signalling NaN + Inf
        (0x7F7F_FFFF, 0x7F7F_FFFF, 0x7F80_0000),    # overflow → +Inf
        (0x7F7F_FFFF, 0x7300_0000, 0x7F80_0000),    # max + half an ulp (2**103): tie, odd → rounds up: Inf
        (0x7F7F_FFFE, 0x7300_0000, 0x7F7F_FFFE),    # even significand: tie stays
        (0x3F80_0000, 0x3380_0000, 0x3F80_0000),    # 1 + 2**-24: tie → even (1)
        (0x3F80_0001, 0x3380_0000, 0x3F80_0002),    # (1 + ulp) + half ulp: tie → even (up)
        (0x3F80_0000, 0xB380_0000, 0x3F7F_FFFF),    # 1 − 2**-24: exact (next below 1)
        (0x3F80_0000, 0xB300_0000, 0x3F80_0000),    # 1 − 2**-25: tie below 1 → even (1)
    ]
    a, b, expected = (np.array(column, dtype=np.uint32) for column in zip(*cases))
    got = bits_of(fp32_add(a.view(np.float32), b.view(np.float32)))
    assert [hex(v) for v in got] == [hex(v) for v in expected]
    from tensornic.sim.test_fp32_add import softfloat_add
    assert [hex(v) for v in softfloat_add(a, b)] == [hex(v) for v in expected]


def test_fp32_add_shapes_and_errors():
    assert bits_of(fp32_add(np.float32(1.0), np.float32(2.0))) == 0x4040_0000
    grid = fp32_add(np.ones((3, 1), np.float32), np.arange(4, dtype=np.float32))
    assert grid.shape == (3, 4) and grid.dtype == np.float32
    with pytest.raises(TypeError, match="float32"):
        fp32_add(np.ones(3), np.ones(3, np.float32))
    with pytest.raises(TypeError, match="float32"):
        fp32_add([1, 2], np.ones(2, np.float32))


# --- BF16 ----------------------------------------------------------------------------------------------------

def test_bf16_encode_matches_ml_dtypes():
    import ml_dtypes
    upper = np.arange(1 << 16, dtype=np.uint32) << 16
    rng = np.random.default_rng(3)
    lowers = [0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF]
    x = np.concatenate([upper | low for low in lowers] +
                       [upper | rng.integers(0, 1 << 16, upper.size, dtype=np.uint32)]).astype(np.uint32)
    with np.errstate(invalid="ignore"):
        expected = x.view(np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)
    got = bf16_encode(x.view(np.float32))
    assert got.dtype == np.uint16
    bad = np.nonzero(got != expected)[0]
    assert not len(bad), [(hex(x[i]), hex(got[i]), hex(expected[i])) for i in bad[:5]]


def test_bf16_encode_by_hand():
    cases = {
        0x3F80_8000: 0x3F80,   # tie, even kept → down
        0x3F81_8000: 0x3F82,   # tie, odd kept → up
        0x3F80_8001: 0x3F81,   # above the tie
        0x7F7F_FFFF: 0x7F80,   # largest finite → Inf
        0x0000_8000: 0x0000,   # subnormal tie → 0 (even)
        0x007F_FFFF: 0x0080,   # largest subnormal → smallest normal
        0xFF80_0001: 0xFFC0,   # negative signalling NaN → negative quiet NaN
        0x7FFF_FFFF: 0x7FC0,
    }
    got = bf16_encode(f32(*cases))
    assert [hex(v) for v in got] == [hex(v) for v in cases.values()]


def test_bf16_decode_exhaustive():
    import ml_dtypes
    u = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    expected = u.view(ml_dtypes.bfloat16).astype(np.float32).view(np.uint32)
    assert np.array_equal(bits_of(bf16_decode(u)), expected)
    assert np.array_equal(bf16_encode(bf16_decode(u[(u & 0x7F80) != 0x7F80])), u[(u & 0x7F80) != 0x7F80])
    with pytest.raises(TypeError):
        bf16_decode(np.zeros(3, np.int32))
    with pytest.raises(TypeError):
        bf16_encode(np.zeros(3))


# --- MXINT8 --------------------------------------------------------------------------------------------------

def encode(values, block=32):
    values = np.asarray(values, dtype=np.float32)
    return mxint8_encode(values, block)


def test_mx_zero_blocks():
    for zero in (0.0, -0.0):
        scales, q = encode(np.full(32, zero))
        assert scales.tolist() == [0] and q.tolist() == [0] * 32          # e = −127, scale byte 0
        assert bits_of(mxint8_decode(scales, q)).tolist() == [0] * 32      # decodes to +0


def test_mx_ties_at_every_position():
    i = np.arange(32)
    # All values in [1, 2), so e = 0 and q = V·64. 64.5 + 2i is a tie between 64 + 2i (even) and 65 + 2i;
    # 65.5 + 2i one between 65 + 2i and 66 + 2i (even); the last, 127.5, rounds to 128 and saturates.
    cases = [((64.5 + 2 * i) / 64, 64 + 2 * i),
             ((65.5 + 2 * i) / 64, np.where(i == 31, 127, 66 + 2 * i))]
    for values, expected in cases:
        for sign in (1, -1):
            scales, q = encode(sign * values)
            assert scales.tolist() == [127]
            assert q.tolist() == (sign * expected).tolist()
    # Small ties in a block whose largest value is 1: 0.5 → 0, 1.5 → 2, 2.5 → 2, 3.5 → 4 (in units of 2**-6).
    v = np.zeros(32)
    v[0] = 1.0
    v[1:5] = np.array([0.5, 1.5, 2.5, 3.5]) / 64
    v[5:9] = -v[1:5]
    scales, q = encode(v)
    assert scales.tolist() == [127]
    assert q[:9].tolist() == [64, 0, 2, 2, 4, 0, -2, -2, -4]


def test_mx_saturation():
    # e = 0 for every value in [1, 2): q = V·64, so 127.5/64 rounds to 128 and saturates to 127.
    v = np.array([127.5, 127.25, 127.75, -127.5, 1.9999999, 1.0, -1.0, 0.0] * 4) / np.array([64, 64, 64, 64, 1, 1, 1, 1] * 4)
    scales, q = encode(v)
    assert scales.tolist() == [127]
    assert q[:8].tolist() == [127, 127, 127, -127, 127, 64, -64, 0]
    # The largest finite value: e = 127, scale 254, q = (2 − 2**-23)·64 → 127.
    scales, q = encode(np.full(32, np.finfo(np.float32).max))
    assert scales.tolist() == [254] and q.tolist() == [127] * 32


def test_mx_subnormal_only_block():
    # Subnormals are k·2**-149 < 2**-126, so e = −127 (scale 0) and q = V·2**133 = k·2**-16.
    k = np.array([65536, 98304, 32768, 163840, (1 << 23) - 1, 1, 0, 3 * 65536] * 4, dtype=np.uint32)
    v = k.view(np.float32)
    signs = np.where(np.arange(32) % 3 == 0, -1, 1).astype(np.float32)
    scales, q = encode(v * signs)
    assert scales.tolist() == [0]
    magnitudes = [1, 2, 0, 2, 127, 0, 0, 3] * 4                # 1.5 → 2, 0.5 → 0, 2.5 → 2, 127.99… → 127
    assert q.tolist() == (np.array(magnitudes) * signs).astype(int).tolist()
    # Decoding q·2**-133: q = 1 is the subnormal 2**16·2**-149.
    decoded = bits_of(mxint8_decode(np.array([0], np.uint8), np.array([1, -3] + [0] * 30, np.int8)))
    assert decoded[:3].tolist() == [0x0001_0000, 0x8003_0000, 0]
    # The smallest normal 2**-126 alone: e = −126 (scale 1), q = 64.
    scales, q = encode(np.array([2.0 ** -126] + [0] * 31))
    assert scales.tolist() == [1] and q[0] == 64
    # 2**-127 (a subnormal): clamped e = −127 gives q = 2**-127·2**133 = 64 as well.
    scales, q = encode(np.array([2.0 ** -127] + [0] * 31))
    assert scales.tolist() == [0] and q[0] == 64


def test_mx_outlier_among_tiny_values():
    v = np.full(32, 1e-3)
    v[7] = 1e30                      # 2**99 ≤ 1e30 < 2**100: e = 99, q = 1e30 / 2**93 = 100.97 → 101
    scales, q = encode(v)
    assert scales.tolist() == [99 + 127]
    assert q.tolist() == [0] * 7 + [101] + [0] * 24
    decoded = mxint8_decode(scales, q)
    assert decoded[7] == np.float32(101 * 2.0 ** 93) and not decoded[:7].any()


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_mx_non_finite_blocks(bad):
    v = np.concatenate([np.linspace(-1, 1, 32), np.linspace(-1, 1, 32)]).astype(np.float32)
    v[40] = bad
    scales, q = encode(v)
    assert scales[1] == MX_SCALE_NAN and not q[32:].any()
    assert scales[0] == 127
    decoded = bits_of(mxint8_decode(scales, q))
    assert (decoded[32:] == FP32_CANONICAL_NAN).all()
    assert not np.isnan(decoded[:32].view(np.float32)).any()


def test_mx_decode_exact_by_hand():
    scales = np.array([127, 254, 0], np.uint8)
    q = np.zeros(48, np.int8)
    q[0], q[1], q[16], q[32], q[33] = 64, -127, 127, -1, 127
    d = mxint8_decode(scales, q, block=16)
    assert d[0] == 1.0 and d[1] == -127 / 64
    assert d[16] == np.float32(127 * 2.0 ** 121)
    # −1·2**-133 and 127·2**-133 are subnormal: 2**-133 = 2**16·2**-149.
    assert bits_of(d[32:34]).tolist() == [0x8001_0000, 127 << 16]


def test_mx_block16_and_wire_layout():
    rng = np.random.default_rng(5)
    v = rng.standard_normal(64).astype(np.float32)
    scales, q = mxint8_encode(v, block=16)
    assert scales.shape == (4,) and q.shape == (64,)
    wire = mxint8_to_wire(scales, q, block=16)
    assert len(wire) == 4 * 17 and wire[0] == scales[0] and wire[1:17] == q[:16].tobytes()
    back_scales, back_q = mxint8_from_wire(wire, block=16)
    assert np.array_equal(back_scales, scales) and np.array_equal(back_q, q)
    # The round-trip error is at most half a step (2**(e − 6)), or one step where q saturated at ±127.
    d = mxint8_decode(scales, q, block=16)
    step = np.ldexp(1.0, scales.astype(int) - 127 - 6).repeat(16)
    error = np.abs(d.astype(np.float64) - v)
    assert (np.where(np.abs(q) == 127, error <= step, error <= step / 2)).all()


def test_mx_bad_arguments():
    with pytest.raises(ValueError, match="multiple"):
        mxint8_encode(np.zeros(33, np.float32))
    with pytest.raises(ValueError, match="block"):
        mxint8_encode(np.zeros(64, np.float32), block=8)
    with pytest.raises(ValueError, match="one-dimensional"):
        mxint8_encode(np.zeros((2, 32), np.float32))
    with pytest.raises(TypeError, match="float32"):
        mxint8_encode(np.zeros(32))
    with pytest.raises(ValueError, match="elements"):
        mxint8_decode(np.zeros(2, np.uint8), np.zeros(32, np.int8))
    with pytest.raises(TypeError, match="uint8"):
        mxint8_decode(np.zeros(1, np.int8), np.zeros(32, np.int8))
    with pytest.raises(ValueError, match="blocks"):
        mxint8_from_wire(b"\0" * 34)
    assert formats.mxint8_encode(np.zeros(0, np.float32))[0].shape == (0,)


# --- gateware pieces in amaranth.sim -------------------------------------------------------------------------

def _simulate(component, testbench):
    from amaranth.sim import Simulator
    sim = Simulator(component)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def test_leading_zeros_exhaustive_8bit():
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator
    from tensornic.rtl.fp32_add import leading_zeros

    m = Module()
    value = Signal(8)
    count = Signal(4)
    m.d.comb += count.eq(leading_zeros(m, value))
    sim = Simulator(m)

    async def testbench(ctx):
        for v in range(256):
            ctx.set(value, v)
            assert ctx.get(count) == 8 - v.bit_length(), v

    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("block", [16, 32])
def test_mx_encoder_latency_and_throughput(block):
    """Two blocks back to back, output always ready: the first beat comes MXINT8_ENCODE_LATENCY cycles after
    the first block's last element, the encoder never drops i.ready, and the beats follow one per cycle."""
    from tensornic.rtl.mxint8 import MXINT8_ENCODE_LATENCY, MxInt8Encoder

    dut = MxInt8Encoder(block)
    values = bits_of(np.arange(1, 3 * block + 1, dtype=np.float32)).tolist()
    events = {"in": [], "out": []}

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        index = 0
        while len(events["out"]) < len(values) and cycle < 10 * len(values):
            ctx.set(dut.i.valid, index < len(values))
            ctx.set(dut.i.payload[0], values[index] if index < len(values) else 0)
            *_, i_ready, o_valid, beat = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            if index < len(values):
                assert i_ready, f"i.ready low at cycle {cycle}"
                events["in"].append(cycle)
                index += 1
            if o_valid:
                events["out"].append((cycle, beat.first, beat.last))
            cycle += 1

    _simulate(dut, testbench)
    outs = events["out"]
    assert outs[0][0] - events["in"][block - 1] == MXINT8_ENCODE_LATENCY
    assert [c for c, _, _ in outs] == list(range(outs[0][0], outs[0][0] + len(values)))
    assert [f for _, f, _ in outs] == [n % block == 0 for n in range(len(values))]
    assert [last for _, _, last in outs] == [n % block == block - 1 for n in range(len(values))]


def test_adder_latency_constant():
    from tensornic.rtl.fp32_add import FP32_ADD_LATENCY, Fp32Adder

    dut = Fp32Adder(1)
    seen = []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload[0].a, 0x3F80_0000)
        ctx.set(dut.i.payload[0].b, 0x4000_0000)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for cycle in range(1, 12):
            if ctx.get(dut.o.valid):
                seen.append((cycle, ctx.get(dut.o.payload[0])))
            await ctx.tick()

    _simulate(dut, testbench)
    assert seen == [(FP32_ADD_LATENCY, 0x4040_0000)]


# --- the synthesis helper works (lint: sim/lint.py's designs(), tests/test_lint.py) -------------------


def test_bad_gateware_parameters():
    from tensornic.rtl.bf16 import Bf16Encoder
    from tensornic.rtl.fp32_add import Fp32Adder
    from tensornic.rtl.mxint8 import MxInt8Encoder
    with pytest.raises(ValueError, match="lanes"):
        Fp32Adder(0)
    with pytest.raises(ValueError, match="lanes"):
        Bf16Encoder(True)
    with pytest.raises(ValueError, match="block"):
        MxInt8Encoder(24)


@pytest.mark.slow
def test_synthesize_block():
    from tensornic.boards.synth import synthesize_block
    from tensornic.rtl.bf16 import Bf16Encoder
    result = synthesize_block(Bf16Encoder(1), "bf16_encoder")
    assert result["LUT4"] > 0 and result["FF"] >= 17 and result["BRAM"] == 0
    assert result["fmax_mhz"] >= 125, result
