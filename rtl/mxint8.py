"""OCP MXINT8 codec (OCP Microscaling Formats v1.0) with stream ports, block size k = 32 or 16.

What it computes (bit-exact with `tensornic.formats.mxint8_encode` / `mxint8_decode`)
    A block is k consecutive values V of one lane. Encoding: the scale byte X = e + 127 with
    e = floor(log2(max |V|)) clamped to [−127, 127] (an all-zero block: e = −127); elements
    q = round-half-to-even(V · 2**(6 − e)) clamped to [−127, 127]. A block holding Inf or NaN gets X = 0xFF
    and q = 0. Decoding: V' = q · 2**(X − 133) as binary32, exact (subnormal results included); X = 0xFF
    decodes to the canonical NaN 0x7FC00000, and q = 0 to +0.

    Why the gateware needs no log2: for binary32 inputs, X is simply the largest *exponent field* in the
    block. A normal value's floor(log2) is its exponent field − 127; zeros and subnormals are below 2**−126,
    so they contribute e ≤ −127, i.e. X = 0 after the clamp; Inf and NaN have the field 0xFF, which is the
    NaN scale. With X known, q = round(m · 2**(E − X − 17)) for the 24-bit significand m and effective
    exponent E = max(field, 1), i.e. round(m' · 2**-(17 + d)) with d = X − field ≥ 0 and m' = m (normal)
    or 2m (subnormal): a right shift by 17…25 bits and one rounding. Only |q| = 127 rounding up saturates.

Beat: what travels between the encoder and the decoder (`beat_layout(lanes)`)
    One beat per element position and per lane: `StructLayout({"first": 1, "last": 1, "scale": lanes × u8,
    "element": lanes × s8})`, fields from the low bits up in that order. A block is k beats; `first` is set
    on its first beat and `last` on its k-th; `scale[n]` repeats lane n's scale byte on every beat of the
    block. Carrying the scale beside each element keeps both codecs at one element per cycle; the wire
    layout of a block — its scale byte followed by its k element bytes (`tensornic.formats.mxint8_to_wire`)
    — is the beat stream with the scale taken from the `first` beat. The decoder is stateless: it decodes
    every beat with that beat's scale and ignores `first`/`last`.

Ports
    `MxInt8Encoder(block, lanes)`: `i` stream of `lanes` × binary32 → `o` stream of beats.
    `MxInt8Decoder(block, lanes)`: `i` stream of beats → `o` stream of `lanes` × binary32.
    Lane 0 in the low bits; all lanes share one handshake and one block framing.

Timing and buffering
    Encoder: one element per cycle per lane in, sustained. It buffers blocks in a two-bank memory
    (2k × 32 bits per lane): while one bank is read out and quantized, the next block fills the other, so
    `i.ready` stays high as long as `o` keeps up (one beat per cycle). `i.ready` depends on registers only
    (it is low only while both banks hold a complete block). The buffer maps to one DP16KD block RAM per
    lane at k = 32 and to distributed RAM at k = 16 (Yosys's choice on ECP5). The first beat of a block is valid
    `MXINT8_ENCODE_LATENCY` cycles after its last element was taken; the k beats then follow one per cycle.
    Decoder: one beat per cycle in and one element per cycle per lane out, `MXINT8_DECODE_LATENCY` cycles
    later. Both hold as a whole under backpressure (see `fp32_add.StallPipeline`).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .format_constants import (
    FP32_CANONICAL_NAN, FP32_EXP_BIAS, FP32_FRAC_BITS, MX_BLOCK_SIZES, MX_DEFAULT_BLOCK, MX_ELEMENT_FRAC_BITS,
    MX_ELEMENT_MAX, MX_SCALE_BIAS, MX_SCALE_NAN,
)
from .fp32_add import StallPipeline, count_leading_zeros

__all__ = ["MXINT8_ENCODE_LATENCY", "MXINT8_DECODE_LATENCY", "beat_layout", "MxInt8Encoder",
           "MxInt8Decoder"]

#: Reader stages of the encoder: memory read, register, shift amount, shift, round/clamp/negate.
_ENCODE_STAGES = 5
#: Cycles from the transfer of a block's last element to its first beat being valid on `o` (no stall):
#: one to mark the bank full, then the reader's stages.
MXINT8_ENCODE_LATENCY = 1 + _ENCODE_STAGES
#: Cycles from a beat's transfer to its decoded elements being valid on `o` (no stall).
MXINT8_DECODE_LATENCY = 3

#: V = m · 2**(E − 150) and e = X − 127, so V · 2**(6 − e) = m · 2**(E − X − 17): the encoder shifts a
#: significand right by 17 + d bits (see its stage 3 for d and for how subnormals fold into this form).
_SHIFT_BASE = (FP32_EXP_BIAS + FP32_FRAC_BITS) - MX_SCALE_BIAS - MX_ELEMENT_FRAC_BITS
#: Beyond 17 + 8 nothing but the sticky bit is left of a 24-bit significand.
_EXTRA_SHIFT_CAP = 8


def beat_layout(lanes: int = 1) -> data.StructLayout:
    """The payload shared by the encoder's output and the decoder's input; see the module docstring."""
    return data.StructLayout({
        "first": 1,
        "last": 1,
        "scale": data.ArrayLayout(unsigned(8), lanes),
        "element": data.ArrayLayout(signed(8), lanes),
    })


def _check(component, block, lanes):
    problem = None
    if isinstance(block, bool) or not isinstance(block, int) or block not in MX_BLOCK_SIZES:
        problem = f"block must be one of {MX_BLOCK_SIZES}, not {block!r}"
    elif isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        problem = f"lanes must be a positive integer, not {lanes!r}"
    if problem:
        component._MustUse__silence = True      # no "never used" warning for an object that failed
        raise ValueError(problem)


class MxInt8Encoder(wiring.Component):
    """Binary32 → MXINT8 beats, `lanes` independent lanes of blocks of `block` values; see the module
    docstring. Latency MXINT8_ENCODE_LATENCY (from a block's last element to its first beat)."""

    def __init__(self, block: int = MX_DEFAULT_BLOCK, lanes: int = 1):
        _check(self, block, lanes)
        self.block = block
        self.lanes = lanes
        self.latency = MXINT8_ENCODE_LATENCY
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(32), lanes))),
            "o": Out(stream.Signature(beat_layout(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        k, lanes = self.block, self.lanes

        # Two banks of k elements each; address = bank · k + index.
        m.submodules.buffer = buffer = Memory(shape=data.ArrayLayout(unsigned(32), lanes), depth=2 * k, init=[])
        write = buffer.write_port()
        read = buffer.read_port()

        full = Signal(2)                                  # bank holds a complete block not yet read out
        scales = [Signal(data.ArrayLayout(unsigned(8), lanes), name=f"scale_bank{bank}") for bank in (0, 1)]

        # --- writer: fill the free bank, keeping each lane's largest exponent field -------------------------
        w_bank = Signal()
        w_index = Signal(range(k))
        running = Signal(data.ArrayLayout(unsigned(8), lanes))
        largest = Signal(data.ArrayLayout(unsigned(8), lanes))
        set_full = Signal(2)
        m.d.comb += self.i.ready.eq(~full.bit_select(w_bank, 1))
        for lane in range(lanes):
            exponent = self.i.payload[lane][23:31]
            m.d.comb += largest[lane].eq(Mux(exponent > running[lane], exponent, running[lane]))
        m.d.comb += [
            write.addr.eq(Cat(w_index, w_bank)),          # k is a power of two
            write.data.eq(self.i.payload),
            write.en.eq(self.i.valid & self.i.ready),
        ]
        with m.If(self.i.valid & self.i.ready):
            with m.If(w_index == k - 1):
                m.d.sync += [w_index.eq(0), w_bank.eq(~w_bank), running.eq(0)]
                m.d.comb += set_full.eq(Mux(w_bank, 0b10, 0b01))
                for bank in (0, 1):
                    with m.If(w_bank == bank):
                        m.d.sync += scales[bank].eq(largest)
            with m.Else():
                m.d.sync += [w_index.eq(w_index + 1), running.eq(largest)]

        # --- reader: read the full bank out, one element per cycle, through the quantizer ------------------
        r_bank = Signal()
        r_index = Signal(range(k))
        clear_full = Signal(2)
        has_block = full.bit_select(r_bank, 1)
        pipe = StallPipeline(m, None, self.o, _ENCODE_STAGES, name="mx_enc", source_valid=has_block)
        m.d.comb += [
            read.addr.eq(Cat(r_index, r_bank)),
            read.en.eq(pipe.advance),
        ]
        with m.If(pipe.advance & has_block):
            with m.If(r_index == k - 1):
                m.d.sync += [r_index.eq(0), r_bank.eq(~r_bank)]
                m.d.comb += clear_full.eq(Mux(r_bank, 0b10, 0b01))
            with m.Else():
                m.d.sync += r_index.eq(r_index + 1)
        m.d.sync += full.eq((full | set_full) & ~clear_full)

        # Stage 1: the memory's read register, and beside it the block's scale and framing.
        # Stage 2: a plain register after the block RAM (its output is slow: ~6 ns clock to out).
        scale_layout = data.ArrayLayout(unsigned(8), lanes)
        scale = pipe.stage(Mux(r_bank, scales[1], scales[0]), "s1_scale", scale_layout)
        first = pipe.stage(r_index == 0, "s1_first")
        last = pipe.stage(r_index == k - 1, "s1_last")
        values = pipe.stage(read.data, "s2_values")
        carried = [scale, first, last]
        for stage in range(2, _ENCODE_STAGES + 1):
            carried = [pipe.stage(value, f"s{stage}_{name}", shape)
                       for value, name, shape in zip(carried, ("scale", "first", "last"),
                                                     (scale_layout, 1, 1))]
            if stage == 2:
                s2_scale = carried[0]
            if stage == 4:
                s4_scale = carried[0]
        out = self.o.payload
        m.d.comb += [out.scale.eq(carried[0]), out.first.eq(carried[1]), out.last.eq(carried[2])]

        for lane in range(lanes):
            # q = round(m · 2**(E − X − 17)) for significand m and E = max(field, 1). Writing
            # m' = m · 2**(1 − normal) (a subnormal's m doubled; m' < 2**24 either way) and d = X − field
            # (≥ 0, since X is the block's largest field), this is round(m' · 2**-(17 + d)).
            # Stage 3: sign, m', and d capped at 8 (from 8 on, m' · 2**-25 < ½: only the sticky bit).
            x = values[lane]
            field = x[23:31]
            normal = field.any()
            significand = Cat(x[0:FP32_FRAC_BITS], normal)
            doubled = Mux(normal, significand, Cat(Const(0, 1), x[0:FP32_FRAC_BITS]))
            difference = (s2_scale[lane] - field)[0:8]
            capped = Mux(difference[3:].any(), _EXTRA_SHIFT_CAP, difference[0:3])
            s3_sign = pipe.stage(x[31], f"l{lane}_s3_sign")
            s3_significand = pipe.stage(doubled, f"l{lane}_s3_significand", unsigned(24))
            s3_shift = pipe.stage(capped, f"l{lane}_s3_shift", unsigned(4))

            # Stage 4: shift by 17 + s3_shift; keep the integer part (< 128), the round bit, and whether
            # anything below the round bit is set (the low 16 bits always, the next s3_shift bits as the
            # shift says).
            shifted = (s3_significand >> s3_shift)[0:24]
            integer = shifted[_SHIFT_BASE:]                           # 7 bits
            round_bit = shifted[_SHIFT_BASE - 1]
            extra_mask = Signal(_EXTRA_SHIFT_CAP, name=f"l{lane}_extra_mask")
            with m.Switch(s3_shift):
                for amount in range(_EXTRA_SHIFT_CAP + 1):
                    with m.Case(amount):
                        m.d.comb += extra_mask.eq((1 << amount) - 1)
            upper = s3_significand[_SHIFT_BASE - 1:_SHIFT_BASE - 1 + _EXTRA_SHIFT_CAP]
            sticky = s3_significand[0:_SHIFT_BASE - 1].any() | (upper & extra_mask).any()
            s4_sign = pipe.stage(s3_sign, f"l{lane}_s4_sign")
            s4_integer = pipe.stage(integer, f"l{lane}_s4_integer")
            s4_round = pipe.stage(round_bit, f"l{lane}_s4_round")
            s4_sticky = pipe.stage(sticky, f"l{lane}_s4_sticky")

            # Stage 5: round to nearest even, saturate at ±127 (127 rounding up), apply the sign; NaN blocks
            # carry zeros. With v = integer + increment, −v = ~integer + ~increment in 8 bits, so one adder
            # serves both signs.
            increment = s4_round & (s4_sticky | s4_integer[0])
            saturate = s4_integer.all() & increment
            flip = s4_sign.replicate(8)
            signed_value = ((Cat(s4_integer, Const(0, 1)) ^ flip) + (increment ^ s4_sign))[0:8]
            limit = Mux(s4_sign, (-MX_ELEMENT_MAX) & 0xFF, MX_ELEMENT_MAX)
            element = Mux(s4_scale[lane] == MX_SCALE_NAN, 0, Mux(saturate, limit, signed_value))
            m.d.comb += out.element[lane].eq(pipe.stage(element, f"l{lane}_s5_element", unsigned(8)))
        return m


class MxInt8Decoder(wiring.Component):
    """MXINT8 beats → binary32, `lanes` lanes; stateless (every beat carries its scale). Latency
    MXINT8_DECODE_LATENCY. `block` is recorded for the caller's framing; decoding does not depend on it."""

    def __init__(self, block: int = MX_DEFAULT_BLOCK, lanes: int = 1):
        _check(self, block, lanes)
        self.block = block
        self.lanes = lanes
        self.latency = MXINT8_DECODE_LATENCY
        super().__init__({
            "i": In(stream.Signature(beat_layout(lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(32), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        pipe = StallPipeline(m, self.i, self.o, MXINT8_DECODE_LATENCY, name="mx_dec")
        for lane in range(self.lanes):
            scale = self.i.payload.scale[lane]
            q = self.i.payload.element[lane]
            # V = |q| · 2**(X − 133). With p the position of |q|'s top bit, V = 1.f · 2**(X + p − 133):
            # biased exponent X + p − 6 if that is ≥ 1, else a subnormal |q| · 2**(X + 16) · 2**-149.
            # Stage 1: sign, |q| (up to 128), and what depends on the scale alone.
            s1_sign = pipe.stage(q[7], f"l{lane}_s1_sign")
            s1_magnitude = pipe.stage(Mux(q[7], -q, q)[0:8], f"l{lane}_s1_magnitude")
            s1_base = pipe.stage(scale - MX_ELEMENT_FRAC_BITS, f"l{lane}_s1_base", signed(10))
            # Normal iff X + p ≥ 7: always for X ≥ 7, else iff p ≥ 7 − X.
            s1_high_scale = pipe.stage(scale >= 7, f"l{lane}_s1_high_scale")
            s1_threshold = pipe.stage((7 - scale)[0:3], f"l{lane}_s1_threshold", unsigned(3))
            s1_subnormal_shift = pipe.stage((scale + 16)[0:5], f"l{lane}_s1_subnormal_shift", unsigned(5))
            s1_nan = pipe.stage(scale == MX_SCALE_NAN, f"l{lane}_s1_nan")
            s1_zero = pipe.stage(q == 0, f"l{lane}_s1_zero")

            # Stage 2: p, the exponent field, and the shift that puts |q| into the fraction field.
            _, zeros = count_leading_zeros(m, s1_magnitude, f"l{lane}_lzc")
            top = Signal(3, name=f"l{lane}_top")
            m.d.comb += top.eq(~zeros)                                # p = 7 − leading zeros
            normal = s1_high_scale | (top >= s1_threshold)
            biased = (s1_base + top)[0:8]
            # Normal: the top bit goes to bit 23 (shift 23 − p = 16 + (7 − p)); subnormal: shift X + 16.
            shift = Mux(normal, Cat(~top, Const(0b10, 2)), s1_subnormal_shift)
            s2_sign = pipe.stage(s1_sign, f"l{lane}_s2_sign")
            s2_magnitude = pipe.stage(s1_magnitude, f"l{lane}_s2_magnitude")
            s2_exponent = pipe.stage(Mux(normal, biased, 0), f"l{lane}_s2_exponent", unsigned(8))
            s2_shift = pipe.stage(shift, f"l{lane}_s2_shift", unsigned(5))
            s2_nan = pipe.stage(s1_nan, f"l{lane}_s2_nan")
            s2_zero = pipe.stage(s1_zero, f"l{lane}_s2_zero")

            # Stage 3: place the significand; the exponent field and sign go above it.
            fraction = (s2_magnitude << s2_shift)[0:FP32_FRAC_BITS]
            value = Mux(s2_nan, FP32_CANONICAL_NAN,
                        Mux(s2_zero, 0, Cat(fraction, s2_exponent, s2_sign)))
            m.d.comb += self.o.payload[lane].eq(pipe.stage(value, f"l{lane}_s3_value"))
        return m
