"""Ethernet at GMII level: transmitter, receiver and a store-and-forward frame buffer.

What it is for
    Each NIC port is a byte-wide GMII link: one byte per clock (125 MHz = 1 Gb/s) with an enable and an
    error line, in one direction. `EthTransmitter` turns a stream of frame bytes into a wire frame,
    `EthReceiver` turns a wire frame back into bytes plus a verdict, and `FrameBuffer` holds whole frames
    in block RAM so that nothing reaches a consumer before its checks have passed. `tensornic.rtl.udp`
    builds the IPv4/UDP endpoint on top of these.

Wire format (IEEE 802.3 clause 35 GMII, as the transmitter drives it)
    7 × 0x55 preamble, 0xD5 start-of-frame delimiter, the frame (destination MAC first), zero padding up
    to 60 bytes, the FCS (CRC-32 of everything after the SFD, least significant byte first, i.e.
    `zlib.crc32(frame).to_bytes(4, "little")`), then at least `ifg_bytes` (12) idle cycles with `en` low.
    `er` (TX_ER) is never set.

Guarantees
    - `EthTransmitter` takes one byte per cycle while sending a frame; its source must not pause inside a
      frame (`tensornic.rtl.udp` stores a whole datagram first). If it does, the transmitter cannot stall
      the wire: it sends 0x00 for the missing byte, finishes the frame with an inverted FCS so every
      receiver drops it, and counts it in `underruns`.
      Back-to-back frames go out at line rate: exactly `ifg_bytes` idle cycles between the last FCS byte
      and the next preamble when the next frame's first byte is waiting.
    - `EthReceiver` can never be stalled. It registers the GMII inputs, waits for the SFD (any number of
      preamble bytes, including none), then passes every frame byte except the 4-byte FCS on `o` (a
      non-stallable strobe stream) and, one cycle after the last byte, pulses `end` with a `RxStatus`:
      bad FCS, RX_ER seen inside the frame, shorter than 64 bytes (FCS included) or longer than
      `max_frame`. Bytes beyond `max_frame` are not passed on. The first byte of a frame appears on `o`
      at least 6 cycles after the previous frame's `end`, even with a one-cycle gap on the wire.
    - `FrameBuffer` is a circular buffer of `depth` bytes (a power of two) with a speculative write
      pointer: `commit` makes everything written since the last commit/rewind readable, `rewind` forgets
      it. A write while full sets `overflow` (the byte is lost) and a commit of such a frame acts as a
      rewind, so a frame is readable whole or not at all. The read side is a stream with backpressure.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import crc, data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "FrameByte", "GmiiSignature", "RxStatus",
    "PREAMBLE_BYTE", "PREAMBLE_LENGTH", "SFD_BYTE", "MIN_FRAME_BYTES", "FCS_BYTES", "MIN_IFG_BYTES",
    "ETH_HEADER_BYTES", "FCS_RESIDUE",
    "EthTransmitter", "EthReceiver", "FrameBuffer",
]

#: One byte of a frame or datagram; `last` is set on its final byte.
FrameByte = data.StructLayout({"data": 8, "last": 1})

#: Status of a received frame, valid while `EthReceiver.end` is high. All zero: a good frame.
RxStatus = data.StructLayout({
    "fcs_error": 1,     # the CRC over the frame and its FCS is not the CRC-32 residue
    "rx_error": 1,      # RX_ER was high on a byte of the frame
    "too_short": 1,     # fewer than MIN_FRAME_BYTES bytes after the SFD (FCS included)
    "too_long": 1,      # more than max_frame bytes after the SFD (FCS included)
})

PREAMBLE_BYTE = 0x55
PREAMBLE_LENGTH = 7           # preamble bytes before the SFD
SFD_BYTE = 0xD5
FCS_BYTES = 4
MIN_FRAME_BYTES = 64          # FCS included; shorter frames are padded with zeros before the FCS
MIN_IFG_BYTES = 12            # inter-frame gap, in byte times (96 bit times)
ETH_HEADER_BYTES = 14         # destination MAC, source MAC, EtherType
#: FrameBuffer's RAM banks: one ECP5 DP16KD holds 2048 × 9 bits.
BANK_BYTES = 2048
#: `zlib.crc32` of a frame followed by its correct FCS (the CRC-32 residue).
FCS_RESIDUE = 0x2144DF1C


def _fcs_processor():
    # CRC-32 of IEEE 802.3: zlib's crc32 (reflected, init and xor-out 0xFFFFFFFF).
    return crc.catalog.CRC32_ETHERNET(data_width=8).create()


class GmiiSignature(wiring.Signature):
    """One direction of a GMII link, seen from the side that drives it.

    Members (all Out for the driver): `data` (TXD/RXD, 8 bits), `en` (TX_EN/RX_DV), `er` (TX_ER/RX_ER).
    A transmitter has `Out(GmiiSignature())`, a receiver `In(GmiiSignature())`, so
    `wiring.connect(m, a.gmii_tx, b.gmii_rx)` wires one node's output to the next node's input.
    """

    def __init__(self):
        super().__init__({"data": Out(8), "en": Out(1), "er": Out(1)})


class EthTransmitter(wiring.Component):
    """Frame bytes on `i` (destination MAC first, no padding, no FCS; `last` on the final byte) → GMII.

    Ports
        i : In(stream.Signature(FrameByte))   taken one per cycle from the cycle after the SFD is driven.
        gmii : Out(GmiiSignature())           registered outputs; `er` is always 0.
        frames : Out(32)                      frames sent (counting those with an underrun); wraps.
        underruns : Out(32)                   frames sent with an inverted FCS because `i` paused; wraps.
        idle : Out(1)                         no frame in progress and the inter-frame gap has elapsed.
    """

    def __init__(self, *, ifg_bytes=MIN_IFG_BYTES):
        if not isinstance(ifg_bytes, int) or not MIN_IFG_BYTES <= ifg_bytes <= 255:
            raise ValueError(f"ifg_bytes must be an integer in {MIN_IFG_BYTES}…255, not {ifg_bytes!r}")
        self.ifg_bytes = ifg_bytes
        super().__init__({
            "i": In(stream.Signature(FrameByte)),
            "gmii": Out(GmiiSignature()),
            "frames": Out(32),
            "underruns": Out(32),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fcs = fcs = _fcs_processor()

        # Two register stages: the state machine fills `byte`/`en`/`feed` (stage 1); the CRC is fed from
        # stage 1 while stage 1 moves to the GMII outputs (stage 2). The CRC therefore never sits behind the
        # input stream's logic, and the FCS — complete one cycle after the last byte reached stage 1 —
        # goes straight into stage 2, right behind that byte.
        byte = Signal(8)
        en = Signal()
        feed = Signal()             # stage 1 holds a frame byte (data or padding) for the CRC
        start = Signal()            # stage 1 holds the SFD: restart the CRC
        fcs_out = Signal()          # stage 2 takes an FCS byte instead of stage 1
        fcs_byte = Signal(8)
        m.d.comb += [fcs.data.eq(byte), fcs.valid.eq(feed), fcs.start.eq(start)]
        with m.If(fcs_out):
            m.d.sync += [self.gmii.data.eq(fcs_byte), self.gmii.en.eq(1)]
        with m.Else():
            m.d.sync += [self.gmii.data.eq(byte), self.gmii.en.eq(en)]
        m.d.sync += [self.gmii.er.eq(0), en.eq(0), feed.eq(0), start.eq(0)]

        count = Signal(range(max(PREAMBLE_LENGTH + 1, MIN_FRAME_BYTES)))   # preamble / pad / FCS position
        # Idle cycles still to wait; loaded one short because stage 1 adds a cycle before the wire.
        gap = Signal(range(self.ifg_bytes))
        underrun = Signal()

        with m.If(gap != 0):
            m.d.sync += gap.eq(gap - 1)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(gap == 0)
                with m.If((gap == 0) & self.i.valid):
                    m.d.sync += [byte.eq(PREAMBLE_BYTE), en.eq(1), count.eq(1), underrun.eq(0)]
                    m.next = "PREAMBLE"
            with m.State("PREAMBLE"):
                m.d.sync += [en.eq(1), count.eq(count + 1)]
                with m.If(count == PREAMBLE_LENGTH):
                    m.d.sync += [byte.eq(SFD_BYTE), start.eq(1), count.eq(0)]
                    m.next = "DATA"
                with m.Else():
                    m.d.sync += byte.eq(PREAMBLE_BYTE)
            with m.State("DATA"):
                # `count` saturates at the minimum length: only "short enough to pad" matters.
                m.d.comb += self.i.ready.eq(1)
                m.d.sync += [en.eq(1), feed.eq(1), byte.eq(Mux(self.i.valid, self.i.payload.data, 0))]
                with m.If(~self.i.valid):
                    m.d.sync += underrun.eq(1)
                with m.If(count != MIN_FRAME_BYTES - FCS_BYTES):
                    m.d.sync += count.eq(count + 1)
                with m.If(self.i.valid & self.i.payload.last):
                    with m.If(count + 1 < MIN_FRAME_BYTES - FCS_BYTES):
                        m.next = "PAD"
                    with m.Else():
                        m.next = "CRC"
            with m.State("PAD"):
                m.d.sync += [en.eq(1), feed.eq(1), byte.eq(0), count.eq(count + 1)]
                with m.If(count + 1 == MIN_FRAME_BYTES - FCS_BYTES):
                    m.next = "CRC"
            with m.State("CRC"):
                # Stage 1 holds the last byte, entering the CRC now; stage 2 sends it next.
                m.d.sync += count.eq(0)
                m.next = "FCS"
            with m.State("FCS"):
                m.d.comb += [fcs_out.eq(1),
                             fcs_byte.eq((fcs.crc ^ underrun.replicate(32)).word_select(count[:2], 8))]
                m.d.sync += count.eq(count + 1)
                with m.If(count == FCS_BYTES - 1):
                    m.d.sync += [gap.eq(self.ifg_bytes - 1), self.frames.eq(self.frames + 1)]
                    with m.If(underrun):
                        m.d.sync += self.underruns.eq(self.underruns + 1)
                    m.next = "IDLE"
        return m


class EthReceiver(wiring.Component):
    """GMII → frame bytes without preamble, SFD and FCS, plus a verdict per frame.

    Ports
        gmii : In(GmiiSignature())      sampled into registers first; never stalled.
        o_valid, o_data : Out(1), Out(8)  one frame byte (destination MAC first) per strobe; no backpressure.
        end : Out(1)                    one-cycle pulse after the last byte of every frame (also an empty one).
        status : Out(RxStatus)          valid while `end` is high.

    `max_frame`: the longest frame accepted, in bytes after the SFD with the FCS.
    """

    def __init__(self, *, max_frame):
        if not isinstance(max_frame, int) or max_frame < MIN_FRAME_BYTES:
            raise ValueError(f"max_frame must be an integer ≥ {MIN_FRAME_BYTES}, not {max_frame!r}")
        self.max_frame = max_frame
        super().__init__({
            "gmii": In(GmiiSignature()),
            "o_valid": Out(1),
            "o_data": Out(8),
            "end": Out(1),
            "status": Out(RxStatus),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fcs = fcs = _fcs_processor()

        rxd = Signal(8)
        dv = Signal()
        er = Signal()
        m.d.sync += [rxd.eq(self.gmii.data), dv.eq(self.gmii.en), er.eq(self.gmii.er)]

        delay = Signal(8 * FCS_BYTES)           # the last four bytes: they may turn out to be the FCS
        count = Signal(range(self.max_frame + 2))
        error = Signal()

        m.d.comb += fcs.data.eq(rxd)
        m.d.sync += [self.o_valid.eq(0), self.end.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(dv & (rxd == SFD_BYTE)):
                    m.d.comb += fcs.start.eq(1)
                    m.d.sync += [count.eq(0), error.eq(0)]
                    m.next = "DATA"
                with m.Elif(dv):
                    m.next = "PREAMBLE"
            with m.State("PREAMBLE"):
                with m.If(~dv):
                    m.next = "IDLE"
                with m.Elif(rxd == SFD_BYTE):
                    m.d.comb += fcs.start.eq(1)
                    m.d.sync += [count.eq(0), error.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(dv):
                    m.d.comb += fcs.valid.eq(1)
                    m.d.sync += delay.eq(Cat(delay[8:], rxd))
                    with m.If(er):
                        m.d.sync += error.eq(1)
                    with m.If(count <= self.max_frame):
                        m.d.sync += count.eq(count + 1)
                    # A byte leaves the delay line once four newer ones are in it.
                    with m.If((count >= FCS_BYTES) & (count < self.max_frame)):
                        m.d.sync += [self.o_valid.eq(1), self.o_data.eq(delay[:8])]
                with m.Else():
                    m.d.sync += [
                        self.end.eq(1),
                        self.status.fcs_error.eq(~fcs.match_detected),
                        self.status.rx_error.eq(error),
                        self.status.too_short.eq(count < MIN_FRAME_BYTES),
                        self.status.too_long.eq(count > self.max_frame),
                    ]
                    m.next = "IDLE"
        return m


class FrameBuffer(wiring.Component):
    """Store-and-forward buffer of `depth` bytes (a power of two, ≥ 16) in `lib.memory.Memory` banks of
    `bank_bytes` (default 2048, one ECP5 block RAM at 9 bits), each read through its own register.

    Ports
        w_en, w_data : In(1), In(FrameByte)   write a byte (no handshake; see `w_room`).
        w_room : Out(1)                        a byte written now is stored. A register, one cycle behind
                                               the fill: it may stay low one cycle after a read makes room.
        commit : In(1)                         make the bytes written since the last commit/rewind readable
                                               (a write in the same cycle is included). With `overflow`
                                               set (or a write lost in the same cycle) it acts as `rewind`.
        rewind : In(1)                         drop the bytes written since the last commit/rewind.
        overflow : Out(1)                      a write was lost since the last commit/rewind.
        r : Out(stream.Signature(FrameByte))   committed bytes in order; `r.valid` and `r.payload` are
                                               registers (a register and a 5-entry FIFO after the RAM).
        empty : Out(1)                         nothing committed or pending, nothing on `r`.

    Capacity: `depth` bytes in the RAM; bytes already moved towards `r` (up to 7) free their place, so a
    stalled reader lets up to depth + 7 bytes be held.
    """

    def __init__(self, depth, *, bank_bytes=BANK_BYTES):
        if not isinstance(depth, int) or depth < 16 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two ≥ 16, not {depth!r}")
        if not isinstance(bank_bytes, int) or bank_bytes < 16 or bank_bytes & (bank_bytes - 1):
            raise ValueError(f"bank_bytes must be a power of two ≥ 16, not {bank_bytes!r}")
        self.depth = depth
        self.bank_bytes = bank_bytes
        super().__init__({
            "w_en": In(1),
            "w_data": In(FrameByte),
            "w_room": Out(1, init=1),
            "commit": In(1),
            "rewind": In(1),
            "overflow": Out(1),
            "r": Out(stream.Signature(FrameByte)),
            "empty": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bits = self.depth.bit_length() - 1
        # The RAM is cut into banks of at most BANK_BYTES (one ECP5 DP16KD at 9 bits), each read into its
        # own register: a deeper RAM would put the block RAMs' output multiplexer between their slow
        # clock-to-output and the first flip-flop.
        banks = max(1, self.depth // self.bank_bytes)
        bank_bits = (self.depth // banks).bit_length() - 1
        storage = []
        for k in range(banks):
            m.submodules[f"storage{k}"] = bank = memory.Memory(shape=FrameByte, depth=self.depth // banks,
                                                               init=[])
            storage.append((bank.write_port(), bank.read_port()))

        # Pointers carry one bit more than an address, so full (depth apart) differs from empty.
        wp = Signal(bits + 1)       # next write (speculative)
        cp = Signal(bits + 1)       # end of the committed bytes
        rp = Signal(bits + 1)       # next read
        wp_next = Signal.like(wp)
        # `w_room` is a register computed from this cycle's pointers, so no arithmetic sits between the
        # writer's logic and the memory. It is safe one cycle later because the fill grows by at most one
        # byte per cycle: fewer than depth − 1 bytes now means fewer than depth then.
        m.d.sync += self.w_room.eq((wp - rp)[:bits + 1] < self.depth - 1)

        stored = Signal()
        m.d.comb += [
            stored.eq(self.w_en & self.w_room),
        ]
        for k, (wr, _) in enumerate(storage):
            m.d.comb += [wr.addr.eq(wp[:bank_bits]), wr.data.eq(self.w_data),
                         wr.en.eq(stored & (wp[bank_bits:bits] == k))]
        lost = self.w_en & ~self.w_room
        with m.If(self.rewind | (self.commit & (self.overflow | lost))):
            m.d.comb += wp_next.eq(cp)
            m.d.sync += self.overflow.eq(0)
        with m.Elif(self.commit):
            m.d.comb += wp_next.eq(wp + stored)
            m.d.sync += [cp.eq(wp + stored), self.overflow.eq(0)]
        with m.Else():
            m.d.comb += wp_next.eq(wp + stored)
            with m.If(lost):
                m.d.sync += self.overflow.eq(1)
        m.d.sync += wp.eq(wp_next)

        # Read side: the block RAM's output goes straight into a register, then into a small FIFO whose
        # output is a register: nothing but a flip-flop sees the RAM's slow clock-to-output. A read is
        # issued only when the FIFO has room for it and for those still in flight; five entries keep one
        # byte per cycle flowing.
        m.submodules.out = out = fifo.SyncFIFOBuffered(width=FrameByte.size, depth=5)
        in_flight = Signal(2)       # [0]: a byte on the RAM's output now; [1]: a byte in `fetched` now
        fetched = [Signal(FrameByte.size, name=f"fetched{k}") for k in range(banks)]
        bank_read = Signal(max(1, bits - bank_bits))        # the bank of the read in flight, per stage
        bank_fetched = Signal.like(bank_read)
        issue = Signal()
        m.d.comb += [
            issue.eq((rp != cp) & (out.level + in_flight[0] + in_flight[1] < out.depth)),
            out.w_data.eq(Array(fetched)[bank_fetched]), out.w_en.eq(in_flight[1]),
            self.r.valid.eq(out.r_rdy), self.r.payload.eq(out.r_data), out.r_en.eq(self.r.ready),
            self.empty.eq((wp == rp) & (in_flight == 0) & (out.level == 0)),
        ]
        for (_, rd), register in zip(storage, fetched):
            m.d.comb += [rd.addr.eq(rp[:bank_bits]), rd.en.eq(1)]
            m.d.sync += register.eq(rd.data)
        m.d.sync += [in_flight.eq(Cat(issue, in_flight[0])), rp.eq(rp + issue), bank_fetched.eq(bank_read)]
        if banks > 1:
            m.d.sync += bank_read.eq(rp[bank_bits:bits])
        return m
