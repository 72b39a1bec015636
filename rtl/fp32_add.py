"""Pipelined IEEE 754 binary32 adder with stream ports: one addition per cycle per lane.

What it computes
    `o.payload[n] = i.payload[n].a + i.payload[n].b` for every lane n, exactly as `tensornic.formats.fp32_add`
    (the golden model) and SoftFloat's `f32_add` with the RISC-V specialization:
    - round to nearest, ties to even;
    - subnormal operands and results in full (no flush to zero, no denormals-are-zero);
    - signed zeros: x + (−x) = +0, (−0) + (−0) = −0, (+0) + (−0) = +0;
    - ±Inf + finite = ±Inf, Inf + Inf = Inf, Inf + (−Inf) = NaN; overflow rounds to ±Inf;
    - every NaN result is the canonical quiet NaN 0x7FC00000 (input payloads and signs are not propagated).
    No exception flags are produced.

Ports
    `i`: stream of `ArrayLayout(StructLayout({"a": 32, "b": 32}), lanes)` (lane 0 in the low bits, `a` below
    `b` within a lane); `o`: stream of `ArrayLayout(unsigned(32), lanes)`. All lanes share one handshake.

Timing
    Operands taken in cycle c give a sum valid on `o` in cycle c + `FP32_ADD_LATENCY` (6) while `o` is not
    stalled; one new addition per cycle per lane. Under backpressure the whole pipeline holds (it never drops or duplicates a result):
    `i.ready = ~o.valid | o.ready`, so `i.ready` depends combinationally on `o.ready`; `o.valid` is a register.

How (stages; a register after each)
    1. unpack, compare magnitudes, swap so that |big| ≥ |small|, exponent difference, special cases;
    2. align the small significand (3 extra bits: guard, round, sticky; the sticky bit compares the shift
       with the position of the small significand's lowest one, counted in stage 1);
    3. add or subtract the 28-bit significands;
    4. count leading zeros; the normalizing shift is limited so the exponent stays ≥ 1 (gradual underflow)
       by a marker bit placed from the exponent in stage 3;
    5. normalize;
    6. round to nearest even and pack: the rounding carry runs into the exponent field, which handles
       mantissa overflow, the subnormal → normal step and overflow to Inf without special cases.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .format_constants import FP32_CANONICAL_NAN, FP32_EXP_MAX, FP32_FRAC_BITS

__all__ = ["FP32_ADD_LATENCY", "Fp32Adder", "StallPipeline", "operand_layout", "count_leading_zeros",
           "leading_zeros", "wire"]

#: Cycles from the input transfer to the result being valid on `o` (no backpressure).
FP32_ADD_LATENCY = 6

_SIG = FP32_FRAC_BITS + 1          # significand bits with the hidden bit: 24
_EXTRA = 3                         # guard, round and sticky bits below the significand
_WIDE = _SIG + _EXTRA + 1          # sum width: one carry bit above: 28


def operand_layout(lanes: int) -> data.ArrayLayout:
    """The adder's input payload: `lanes` × {a, b} binary32 patterns."""
    return data.ArrayLayout(data.StructLayout({"a": unsigned(32), "b": unsigned(32)}), lanes)


class StallPipeline:
    """Bookkeeping for a fixed-length pipeline between two streams that stalls as a whole.

    Every stage register loads only when `advance` is high; `advance = ~o.valid | o.ready`, so the pipeline
    moves whenever its last stage is empty or being emptied and holds otherwise. One valid bit per stage
    travels with the data. Used by the adder and the codecs.

    `i` is the input stream (its `ready` is driven here); with `i=None`, `source_valid` says when the
    first stage loads an item and the caller consumes its source whenever `source_valid & advance`.
    """

    def __init__(self, m: Module, i, o, stages: int, *, name: str = "pipe", source_valid=None):
        if stages < 1:
            raise ValueError(f"a pipeline needs at least one stage, not {stages}")
        if (i is None) == (source_valid is None):
            raise ValueError("give either an input stream or source_valid")
        self.m = m
        self.advance = Signal(name=f"{name}_advance")
        self.valid = [Signal(name=f"{name}_valid{n + 1}") for n in range(stages)]
        m.d.comb += self.advance.eq(~self.valid[-1] | o.ready)
        if i is not None:
            m.d.comb += i.ready.eq(self.advance)
            source_valid = i.valid
        m.d.comb += o.valid.eq(self.valid[-1])
        with m.If(self.advance):
            m.d.sync += self.valid[0].eq(source_valid)
            for previous, following in zip(self.valid, self.valid[1:]):
                m.d.sync += following.eq(previous)

    def stage(self, value, name: str, shape=None):
        """A register (of `shape`, by default `value`'s) that loads `value` whenever the pipeline advances."""
        if shape is None:
            shape = value.shape()
        register = Signal(shape, name=name)
        with self.m.If(self.advance):
            self.m.d.sync += register.eq(value)
        return register


def wire(m: Module, value, name: str, shape=None):
    """`value` as a named combinational signal. Amaranth emits an expression again at every use, so an
    expression used several times (or by a tree of slices) is given a name once; this keeps the Verilog,
    and Verilator's compile time, small. Synthesis is unaffected."""
    signal = Signal(value.shape() if shape is None else shape, name=name)
    m.d.comb += signal.eq(value)
    return signal


def count_leading_zeros(m: Module, value, name: str = "lzc"):
    """(all_zero, count) for `value` (width a power of two): `count` (log2(width) bits) is the number of
    leading zeros when `all_zero` is low. A log-depth tree of 2:1 muxes, no adders; every node is a named
    signal in `m`."""
    width = len(value)
    if width < 1 or width & (width - 1):
        raise ValueError(f"count_leading_zeros needs a power-of-two width, not {width}")
    if width == 1:
        return wire(m, ~value[0], f"{name}_z"), Const(0, 0)
    value = wire(m, value, f"{name}_in")
    half = width // 2
    high_zero, high_count = count_leading_zeros(m, value[half:], name + "h")
    low_zero, low_count = count_leading_zeros(m, value[:half], name + "l")
    # The high half decides unless it is all zero; then the count is half plus the low half's count.
    count = Mux(high_zero, Cat(low_count, Const(1, 1)), Cat(high_count, Const(0, 1)))
    return wire(m, high_zero & low_zero, f"{name}_z"), wire(m, count, f"{name}_n")


def leading_zeros(m: Module, value, name: str = "lzc"):
    """Number of leading zeros of `value` (width a power of two); an all-zero value gives its width."""
    all_zero, count = count_leading_zeros(m, value, name)
    return Mux(all_zero, len(value), count)


def _add_lane(pipe: StallPipeline, a, b, lane: int):
    """The six stages for one lane; returns the registered result."""
    n = f"l{lane}_"
    m = pipe.m

    # --- 1: unpack, order by magnitude, exponent difference, special cases ---------------------------------
    def unpack(x, which):
        sign, exp, frac = x[31], x[23:31], x[0:23]
        normal = wire(m, exp.any(), f"{n}{which}_normal")
        significand = wire(m, Cat(frac, normal), f"{n}{which}_significand")   # hidden bit for normals
        effective_exp = wire(m, Cat(exp[0] | ~normal, exp[1:]), f"{n}{which}_exp")   # subnormals: 1
        is_max = wire(m, exp == FP32_EXP_MAX, f"{n}{which}_exp_max")
        frac_zero = wire(m, ~frac.any(), f"{n}{which}_frac_zero")
        return sign, effective_exp, significand, is_max & ~frac_zero, is_max & frac_zero

    sa, ea, ma, nan_a, inf_a = unpack(a, "a")
    sb, eb, mb, nan_b, inf_b = unpack(b, "b")
    a_bigger = wire(m, a[0:31] >= b[0:31], n + "a_bigger")      # magnitude order, subnormals included

    def alignment(difference, which):
        # Differences of 32 and more act like 31: from 27 on everything lands in the sticky bit. (Only the
        # difference in the right order is used, so its sign does not matter.)
        difference = wire(m, difference, f"{n}diff_{which}")
        return Mux(difference[5:8].any(), 31, difference[0:5])

    shift = Mux(a_bigger, alignment((ea - eb)[0:8], "ab"), alignment((eb - ea)[0:8], "ba"))

    def lowest_one(significand, which):
        # Position of the lowest set bit of significand·8, 32 or more if there is none: a right shift by
        # more than that loses a one, i.e. sets the sticky bit. Counted here, beside the comparison, so
        # that stage 2 needs only a small comparison for the sticky bit.
        reversed_ext = Cat(Const(0, 32 - _SIG - _EXTRA), Cat(Const(0, _EXTRA), significand)[::-1])
        none, trailing = count_leading_zeros(m, reversed_ext, f"{n}{which}_tz")
        return Cat(trailing, none)

    s1_sign = pipe.stage(Mux(a_bigger, sa, sb), n + "s1_sign")
    s1_sub = pipe.stage(sa ^ sb, n + "s1_sub")
    s1_exp = pipe.stage(Mux(a_bigger, ea, eb), n + "s1_exp")
    s1_big = pipe.stage(Mux(a_bigger, ma, mb), n + "s1_big")
    s1_small = pipe.stage(Mux(a_bigger, mb, ma), n + "s1_small")
    s1_shift = pipe.stage(shift, n + "s1_shift")
    s1_small_lowest = pipe.stage(Mux(a_bigger, lowest_one(mb, "b"), lowest_one(ma, "a")), n + "s1_small_lowest")
    nan = nan_a | nan_b | (inf_a & inf_b & (sa ^ sb))
    s1_nan = pipe.stage(nan, n + "s1_nan")
    s1_inf = pipe.stage(inf_a | inf_b, n + "s1_inf")
    s1_inf_sign = pipe.stage(Mux(inf_a, sa, sb), n + "s1_inf_sign")
    s1_zero_sign = pipe.stage(sa & sb, n + "s1_zero_sign")      # an exact zero sum is −0 only for (−0)+(−0)

    # --- 2: align the small operand: significand·8 >> shift, with the bits shifted out OR-ed into bit 0 ---
    small_ext = Cat(Const(0, _EXTRA), s1_small)                  # 27 bits
    aligned = (small_ext >> s1_shift)[0:_SIG + _EXTRA]
    sticky = wire(m, s1_shift > s1_small_lowest, n + "sticky")

    carried = [(s1_sign, "sign"), (s1_sub, "sub"), (s1_exp, "exp"), (s1_nan, "nan"), (s1_inf, "inf"),
               (s1_inf_sign, "inf_sign"), (s1_zero_sign, "zero_sign")]
    s2 = {key: pipe.stage(value, f"{n}s2_{key}") for value, key in carried}
    s2_big = pipe.stage(Cat(Const(0, _EXTRA), s1_big), n + "s2_big")
    s2_small = pipe.stage(aligned | sticky, n + "s2_small")

    # --- 3: add or subtract (|big| ≥ |small|, so the difference is never negative) -------------------------
    total = Mux(s2["sub"], s2_big - s2_small, s2_big + s2_small)[0:_WIDE]
    # The normalizing shift must not take the exponent below 1 (gradual underflow): a marker bit
    # at position 27 − exp of the 28-bit sum has exp leading zeros, so counting the leading zeros of
    # (sum | marker) gives min(leading zeros of the sum, exp) with no comparison after the count.
    marker = Cat(*[s2["exp"] == _WIDE - 1 - position for position in range(_WIDE)])
    s3 = {key: pipe.stage(value, f"{n}s3_{key}") for key, value in s2.items()}
    s3_sum = pipe.stage(total, n + "s3_sum")
    s3_marker = pipe.stage(marker, n + "s3_marker")

    # --- 4: leading zeros, limited by the exponent --------------------------------------------------------
    _, norm_shift = count_leading_zeros(m, Cat(Const(0, 32 - _WIDE), s3_sum | s3_marker), n + "lz")
    s4 = {key: pipe.stage(value, f"{n}s4_{key}") for key, value in s3.items() if key != "sub"}
    s4_sum = pipe.stage(s3_sum, n + "s4_sum")
    s4_shift = pipe.stage(norm_shift, n + "s4_shift")
    s4_zero = pipe.stage(~s3_sum.any(), n + "s4_zero")

    # --- 5: normalize; the exponent of the 24-bit significand now at the top of the sum ----------------------
    normalized = (s4_sum << s4_shift)[0:_WIDE]
    scale_exp = (s4["exp"] + 1 - s4_shift)[0:9]                  # 1..255; 255 overflows before rounding
    s5 = {key: pipe.stage(value, f"{n}s5_{key}") for key, value in s4.items() if key != "exp"}
    s5_norm = pipe.stage(normalized, n + "s5_norm")
    s5_exp = pipe.stage(scale_exp, n + "s5_exp")
    s5_zero = pipe.stage(s4_zero, n + "s5_zero")

    # --- 6: round to nearest even, pack, special cases -------------------------------------------------------
    significand = s5_norm[_EXTRA + 1:]                           # 24 bits, hidden bit included
    round_bit = s5_norm[_EXTRA]
    sticky_bits = s5_norm[0:_EXTRA].any()
    increment = wire(m, round_bit & (sticky_bits | significand[0]), n + "increment")
    # ((exp − 1) << 23) + significand: the hidden bit adds the missing 1 to a normal exponent and nothing to
    # a subnormal one; the rounding increment carries into the exponent where it must.
    magnitude = ((s5_exp - 1)[0:8] << FP32_FRAC_BITS) + significand + increment
    finite = Cat(magnitude[0:31], s5["sign"])
    inf = Cat(Const(0, FP32_FRAC_BITS), Const(FP32_EXP_MAX, 8))
    result = Signal(32, name=n + "result")
    with m.If(s5["nan"]):
        m.d.comb += result.eq(FP32_CANONICAL_NAN)
    with m.Elif(s5["inf"]):
        m.d.comb += result.eq(Cat(inf, s5["inf_sign"]))
    with m.Elif(s5_zero):
        m.d.comb += result.eq(Cat(Const(0, 31), s5["zero_sign"]))
    with m.Elif(s5_exp >= FP32_EXP_MAX):
        m.d.comb += result.eq(Cat(inf, s5["sign"]))
    with m.Else():
        m.d.comb += result.eq(finite)
    return pipe.stage(result, n + "s6_result")


class Fp32Adder(wiring.Component):
    """`lanes` IEEE binary32 adders sharing one stream handshake; see the module docstring.

    Latency `FP32_ADD_LATENCY` (also the instance attribute `latency`); throughput one addition per cycle
    per lane.
    """

    def __init__(self, lanes: int = 1):
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            self._MustUse__silence = True        # no "never used" warning for an object that failed
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self.lanes = lanes
        self.latency = FP32_ADD_LATENCY
        super().__init__({
            "i": In(stream.Signature(operand_layout(lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(32), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        pipe = StallPipeline(m, self.i, self.o, FP32_ADD_LATENCY, name="add")
        for lane in range(self.lanes):
            operands = self.i.payload[lane]
            m.d.comb += self.o.payload[lane].eq(_add_lane(pipe, operands.a, operands.b, lane))
        return m
