"""BF16 codec with stream ports: FP32 → BF16 (round to nearest even) and BF16 → FP32 (exact).

What it computes (bit-exact with `tensornic.formats.bf16_encode` / `bf16_decode` and `ml_dtypes.bfloat16`)
    - `Bf16Encoder`: the upper 16 bits of the binary32 pattern, rounded to nearest with ties to even on
      the dropped 16 bits. A carry out of the fraction moves into the exponent (the largest finite values
      round to ±Inf; the largest subnormals to the smallest normal). Subnormals are rounded, not flushed.
      Any NaN becomes the quiet NaN 0x7FC0 with the input's sign (0xFFC0 for a negative NaN).
    - `Bf16Decoder`: the BF16 pattern followed by 16 zero bits: exact, NaN patterns included unchanged.

Ports
    Encoder: `i` stream of `ArrayLayout(unsigned(32), lanes)` → `o` stream of `ArrayLayout(unsigned(16),
    lanes)`. Decoder: the reverse. Lane 0 in the low bits; all lanes share one handshake.

Timing
    `BF16_ENCODE_LATENCY` / `BF16_DECODE_LATENCY` cycles from input transfer to valid output, one element
    per cycle per lane; the pipeline holds as a whole under backpressure (see `fp32_add.StallPipeline`).
"""

from amaranth.hdl import Cat, Const, Module, Mux, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .format_constants import BF16_BITS, BF16_DROPPED_BITS, BF16_QUIET_NAN, FP32_EXP_MAX
from .fp32_add import StallPipeline

__all__ = ["BF16_ENCODE_LATENCY", "BF16_DECODE_LATENCY", "Bf16Encoder", "Bf16Decoder"]

BF16_ENCODE_LATENCY = 1
BF16_DECODE_LATENCY = 1


def _check_lanes(component, lanes):
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        component._MustUse__silence = True      # no "never used" warning for an object that failed
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    return lanes


def bf16_round(x):
    """Combinational FP32 pattern → BF16 pattern, round to nearest even, NaN → quiet NaN with x's sign."""
    kept = x[BF16_DROPPED_BITS:]
    dropped = x[:BF16_DROPPED_BITS]
    half = dropped[-1]
    below_half = dropped[:-1].any()
    increment = half & (below_half | kept[0])
    rounded = (kept + increment)[:BF16_BITS]
    nan = (x[23:31] == FP32_EXP_MAX) & x[:23].any()
    return Mux(nan, Cat(Const(BF16_QUIET_NAN, 15), x[31]), rounded)


class Bf16Encoder(wiring.Component):
    """`lanes` FP32 → BF16 converters (round to nearest even); latency BF16_ENCODE_LATENCY."""

    def __init__(self, lanes: int = 1):
        self.lanes = _check_lanes(self, lanes)
        self.latency = BF16_ENCODE_LATENCY
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(32), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(BF16_BITS), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        pipe = StallPipeline(m, self.i, self.o, BF16_ENCODE_LATENCY, name="bf16_enc")
        for lane in range(self.lanes):
            m.d.comb += self.o.payload[lane].eq(pipe.stage(bf16_round(self.i.payload[lane]), f"l{lane}_bf16"))
        return m


class Bf16Decoder(wiring.Component):
    """`lanes` BF16 → FP32 converters (exact); latency BF16_DECODE_LATENCY."""

    def __init__(self, lanes: int = 1):
        self.lanes = _check_lanes(self, lanes)
        self.latency = BF16_DECODE_LATENCY
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(BF16_BITS), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(32), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        pipe = StallPipeline(m, self.i, self.o, BF16_DECODE_LATENCY, name="bf16_dec")
        for lane in range(self.lanes):
            bits = pipe.stage(self.i.payload[lane], f"l{lane}_bf16")
            m.d.comb += self.o.payload[lane].eq(Cat(Const(0, BF16_DROPPED_BITS), bits))
        return m
