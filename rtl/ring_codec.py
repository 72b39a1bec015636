"""Byte-stream codecs of the ring engine: FP32 elements ↔ wire bytes in a codec chosen at run time.

`ByteEncoder`: `i` stream of binary32 patterns → `o` stream of wire bytes; `ByteDecoder`: the reverse.
`codec` (a `nic_format.Codec`) must hold still while a frame passes. Wire layouts (as `tensornic.formats`
and numpy's `tobytes()`): FP32 4 bytes little-endian, BF16 2 bytes little-endian, MXINT8 per block its
scale byte then its k element bytes (`formats.mxint8_to_wire`). Frames hold whole elements (and whole
MXINT8 blocks), so the byte position counters return to zero at every frame end; `clear` (a synchronous
reset of the whole codec, pipelines included) recovers from an aborted frame.

Both take one element per cycle (the MXINT8 encoder emits k + 1 bytes per k elements, so it takes k
elements per k + 1 cycles when its output is the bottleneck) and hold as a whole under backpressure.
"""

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .bf16 import Bf16Decoder, Bf16Encoder
from .format_constants import MX_DEFAULT_BLOCK
from .mxint8 import MxInt8Decoder, MxInt8Encoder
from .nic_format import Codec

__all__ = ["ByteEncoder", "ByteDecoder"]

#: A group of 1…4 bytes to send, lowest first.
_GROUP = data.StructLayout({"bytes": unsigned(32), "count": unsigned(3)})


class _Serializer(wiring.Component):
    """Groups of 1…4 bytes → one byte per cycle."""
    i: In(stream.Signature(_GROUP))
    o: Out(stream.Signature(unsigned(8)))

    def elaborate(self, platform):
        m = Module()
        held = Signal(32)
        left = Signal(3)                          # bytes of `held` still to send
        m.d.comb += [self.o.valid.eq(left != 0), self.o.payload.eq(held[0:8])]
        # Take a new group when nothing is held or the last held byte goes out this cycle.
        m.d.comb += self.i.ready.eq((left == 0) | ((left == 1) & self.o.ready))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [held.eq(self.i.payload.bytes), left.eq(self.i.payload.count)]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += [held.eq(held >> 8), left.eq(left - 1)]
        return m


class ByteEncoder(wiring.Component):
    """Binary32 → wire bytes in `codec` (see the module docstring)."""

    def __init__(self, mx_block: int = MX_DEFAULT_BLOCK):
        self.mx_block = mx_block
        super().__init__({
            "codec": In(2),
            "clear": In(1),
            "i": In(stream.Signature(unsigned(32))),
            "o": Out(stream.Signature(unsigned(8))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = ResetInserter(self.clear)(_EncoderCore(self.mx_block))
        m.d.comb += inner.codec.eq(self.codec)
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        wiring.connect(m, inner.o, wiring.flipped(self.o))
        return m


class _EncoderCore(wiring.Component):
    codec: In(2)
    i: In(stream.Signature(unsigned(32)))
    o: Out(stream.Signature(unsigned(8)))

    def __init__(self, mx_block):
        self.mx_block = mx_block
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.bf16 = bf16 = Bf16Encoder()
        m.submodules.mx = mx = MxInt8Encoder(self.mx_block)
        m.submodules.ser = ser = _Serializer()
        wiring.connect(m, ser.o, wiring.flipped(self.o))

        # Input: to the selected sub-encoder (FP32 goes straight to the serializer).
        m.d.comb += [bf16.i.payload[0].eq(self.i.payload), mx.i.payload[0].eq(self.i.payload)]
        group = Signal(_GROUP)
        group_valid = Signal()
        with m.Switch(self.codec):
            with m.Case(Codec.FP32):
                m.d.comb += [group.bytes.eq(self.i.payload), group.count.eq(4),
                             group_valid.eq(self.i.valid), self.i.ready.eq(ser.i.ready)]
            with m.Case(Codec.BF16):
                m.d.comb += [bf16.i.valid.eq(self.i.valid), self.i.ready.eq(bf16.i.ready),
                             group.bytes.eq(bf16.o.payload[0]), group.count.eq(2),
                             group_valid.eq(bf16.o.valid), bf16.o.ready.eq(ser.i.ready)]
            with m.Default():
                beat = mx.o.payload
                m.d.comb += [mx.i.valid.eq(self.i.valid), self.i.ready.eq(mx.i.ready),
                             group.bytes.eq(Mux(beat.first, Cat(beat.scale[0], beat.element[0]),
                                                beat.element[0])),
                             group.count.eq(Mux(beat.first, 2, 1)),
                             group_valid.eq(mx.o.valid), mx.o.ready.eq(ser.i.ready)]
        m.d.comb += [ser.i.payload.eq(group), ser.i.valid.eq(group_valid)]
        return m


class ByteDecoder(wiring.Component):
    """Wire bytes in `codec` → binary32 (see the module docstring)."""

    def __init__(self, mx_block: int = MX_DEFAULT_BLOCK):
        self.mx_block = mx_block
        super().__init__({
            "codec": In(2),
            "clear": In(1),
            "i": In(stream.Signature(unsigned(8))),
            "o": Out(stream.Signature(unsigned(32))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = ResetInserter(self.clear)(_DecoderCore(self.mx_block))
        m.d.comb += inner.codec.eq(self.codec)
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        wiring.connect(m, inner.o, wiring.flipped(self.o))
        return m


class _DecoderCore(wiring.Component):
    codec: In(2)
    i: In(stream.Signature(unsigned(8)))
    o: Out(stream.Signature(unsigned(32)))

    def __init__(self, mx_block):
        self.mx_block = mx_block
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        k = self.mx_block
        m.submodules.bf16 = bf16 = Bf16Decoder()
        m.submodules.mx = mx = MxInt8Decoder(k)

        # Gather bytes into a word; a completed word (or MXINT8 beat) waits in `out` for its decoder.
        acc = Signal(24)
        index = Signal(range(k + 1))             # bytes of the current element (FP32/BF16) or block (MXINT8)
        out = Signal(32)
        out_first = Signal()
        out_last = Signal()
        out_valid = Signal()
        scale = Signal(8)
        need = Mux(self.codec == Codec.FP32, 3, 1)   # index of an element's last byte
        byte = self.i.payload
        taken = Signal()                        # the pending word goes to its decoder this cycle
        is_mx = self.codec == Codec.MXINT8
        completes = Mux(is_mx, index != 0, index == need)
        m.d.comb += self.i.ready.eq(~completes | ~out_valid | taken)
        with m.If(taken):
            m.d.sync += out_valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.If(is_mx):
                with m.If(index == 0):
                    m.d.sync += [scale.eq(byte), index.eq(1)]
                with m.Else():
                    m.d.sync += [out.eq(Cat(byte, scale)), out_first.eq(index == 1), out_last.eq(index == k),
                                 out_valid.eq(1), index.eq(Mux(index == k, 0, index + 1))]
            with m.Elif(completes):
                m.d.sync += [out.eq(Mux(self.codec == Codec.FP32, Cat(acc, byte), Cat(acc[0:8], byte))),
                             out_valid.eq(1), index.eq(0)]
            with m.Else():
                m.d.sync += index.eq(index + 1)
                # Byte `index` of the element goes to bits 8·index of acc.
                with m.Switch(index):
                    for position in range(3):
                        with m.Case(position):
                            m.d.sync += acc[8 * position:8 * position + 8].eq(byte)

        beat = mx.i.payload
        m.d.comb += [bf16.i.payload[0].eq(out[0:16]),
                     beat.element[0].eq(out[0:8]), beat.scale[0].eq(out[8:16]),
                     beat.first.eq(out_first), beat.last.eq(out_last)]
        with m.Switch(self.codec):
            with m.Case(Codec.FP32):
                m.d.comb += [self.o.payload.eq(out), self.o.valid.eq(out_valid), taken.eq(out_valid & self.o.ready)]
            with m.Case(Codec.BF16):
                m.d.comb += [bf16.i.valid.eq(out_valid), taken.eq(out_valid & bf16.i.ready),
                             self.o.payload.eq(bf16.o.payload[0]), self.o.valid.eq(bf16.o.valid),
                             bf16.o.ready.eq(self.o.ready)]
            with m.Default():
                m.d.comb += [mx.i.valid.eq(out_valid), taken.eq(out_valid & mx.i.ready),
                             self.o.payload.eq(mx.o.payload[0]), self.o.valid.eq(mx.o.valid),
                             mx.o.ready.eq(self.o.ready)]
        return m
