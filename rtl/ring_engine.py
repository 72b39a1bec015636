"""The NIC's ring all-reduce engine: one node of the ring of docs/allreduce.md, speaking the tensornic
protocol (rtl/nic_format.py, docs/nic.md) in UDP payloads.

Ports
    Configuration (`In`, held still while an operation runs): `rank`, `world`, `job`, `chunk` (C, elements
    per chunk), `frame` (P, elements per frame), `frames_per_chunk` (⌈C/P⌉), `slice_frames` (F),
    `rs_codec`, `ag_codec` (`nic_format.Codec`), `timeout` (cycles without progress before giving up),
    `rto` (cycles without an acknowledgement before going back to the oldest unacknowledged frame),
    `ack_every` (frames accepted per ACK) and `ack_delay` (cycles an accepted frame may wait for its ACK).
    `start` (a one-cycle pulse) begins an operation; `status` (`nic_format.Status`) and `error`
    (`nic_format.ErrorCode`) report it; counters in `stats`.
    Host port to the vector memory (usable while not busy): `host_addr`, `host_wdata`, `host_we`,
    `host_rdata` (valid the cycle after `host_addr`). The host writes x (the padded vector, chunk c at
    c·C) and reads the result back from the same place.
    Network (the UdpEndpoint's message interface): `tx_length` (UDP payload bytes, before each datagram),
    `tx` bytes with `last`, `tx_peer` (0: the successor, 1: the predecessor; held from `tx_length` to the
    last byte), and `rx` (datagrams addressed to this node, already checked by the UDP layer).

How
    * Receive path: the header is parsed; the next in-order DATA frame from the predecessor streams through
      decode → FP32 add with the local element → encode into a retransmission slot (the frame this node
      sends one step later), and/or through the all-gather decoder into the vector memory (the result, in
      place). Nothing is committed before the frame's last byte, and a frame is taken only if its slot is
      free, so duplicates and out-of-order frames are dropped (and re-acknowledged) without effect.
    * Send path: ACKs (cumulative: the next sequence number expected) to the predecessor have priority;
      DATA frames go out in sequence order within a window of `window` frames after the oldest
      unacknowledged one: step-0 frames are encoded from the vector memory on the fly (a retransmitted one
      can only be a duplicate once the result has overwritten its source, see docs/nic.md), the others are
      read from their slots. Go-back-N after `rto` cycles without an acknowledgement.
    * Deadlock freedom needs window > 2·F (docs/nic.md); the constructor checks window ≥ 3·F + 1 so that
      frames are not refused in the loss-free steady state.
"""

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .format_constants import MX_BLOCK_SIZES, MX_DEFAULT_BLOCK
from .ethernet import FrameByte      # one byte of a UDP payload, the UdpEndpoint's unit
from .fp32_add import Fp32Adder
from .nic_format import HEADER_BYTES, HEADER_LAYOUT, MAGIC, VERSION, Codec, ErrorCode, Kind, Status
from .ring_codec import ByteDecoder, ByteEncoder

__all__ = ["FrameByte", "RingEngine", "STATS_LAYOUT"]

STATS_LAYOUT = data.StructLayout({
    "frames_sent": 32,        # DATA frames put on the link, retransmissions included
    "retransmits": 32,        # DATA frames sent again
    "frames_accepted": 32,    # DATA frames taken in order
    "frames_dropped": 32,     # DATA frames dropped (duplicate, out of order, no free slot, malformed)
    "acks_sent": 32,
    "cycles": 32,             # cycles from start to done or error
    "bytes_sent": 32,         # UDP payload bytes of every datagram sent (headers, ACKs and resends included)
})


class _Schedule:
    """Registers walking a node's DATA frames in sequence order (see nic_format.RingPlan.frames): slice,
    step, frame in slice, chunk; `first_chunk` is where each slice's step 0 starts (the sender's rank)."""

    def __init__(self, m, e, name):
        self.m, self.e = m, e
        self.seq = Signal(32, name=f"{name}_seq")
        self.slice_base = Signal(32, name=f"{name}_slice_base")    # element index in the chunk
        self.frames_left = Signal(16, name=f"{name}_frames_left")  # frames of the chunk from this slice on
        self.index = Signal(8, name=f"{name}_index")
        self.step = Signal(8, name=f"{name}_step")
        self.chunk = Signal(8, name=f"{name}_chunk")
        self.chunk_base = Signal(32, name=f"{name}_chunk_base")
        self.frame_off = Signal(32, name=f"{name}_frame_off")
        self.done = Signal(name=f"{name}_done")
        # frames in this slice
        self.fb = Signal(8, name=f"{name}_fb")
        m.d.comb += self.fb.eq(Mux(self.frames_left < e.slice_frames, self.frames_left, e.slice_frames))
        left = Signal(32, name=f"{name}_left")
        m.d.comb += left.eq(e.chunk - self.frame_off)
        self.count = Signal(16, name=f"{name}_count")
        m.d.comb += self.count.eq(Mux(left < e.frame, left, e.frame))
        self.phase = Signal(name=f"{name}_phase")
        m.d.comb += self.phase.eq(self.step >= e.world_m1)
        self.codec = Signal(2, name=f"{name}_codec")
        m.d.comb += self.codec.eq(Mux(self.phase, e.ag_codec, e.rs_codec))
        self.length = Signal(16, name=f"{name}_length")
        m.d.comb += self.length.eq(e.payload_bytes(self.count, self.codec))
        self.offset = Signal(32, name=f"{name}_offset")
        m.d.comb += self.offset.eq(self.chunk_base + self.frame_off)

    def fields(self):
        return [self.seq, self.slice_base, self.frames_left, self.index, self.step, self.chunk,
                self.chunk_base, self.frame_off, self.done]

    def reset(self, chunk, chunk_base):
        return [self.seq.eq(0), self.slice_base.eq(0), self.frames_left.eq(self.e.frames_per_chunk),
                self.index.eq(0), self.step.eq(0), self.chunk.eq(chunk), self.chunk_base.eq(chunk_base),
                self.frame_off.eq(0), self.done.eq(0)]

    def copy(self, other):
        return [mine.eq(theirs) for mine, theirs in zip(self.fields(), other.fields())]

    def advance(self, first_chunk, first_base):
        """Statements moving to the next frame (under the caller's condition)."""
        m, e, sync = self.m, self.e, self.m.d.sync
        sync += self.seq.eq(self.seq + 1)
        with m.If(self.index + 1 < self.fb):
            sync += [self.index.eq(self.index + 1), self.frame_off.eq(self.frame_off + e.frame)]
        with m.Elif(self.step != e.last_step):
            # Next step: the same frames of the previous chunk.
            sync += [self.index.eq(0), self.frame_off.eq(self.slice_base), self.step.eq(self.step + 1)]
            with m.If(self.chunk == 0):
                sync += [self.chunk.eq(e.world_m1), self.chunk_base.eq(e.last_chunk_base)]
            with m.Else():
                sync += [self.chunk.eq(self.chunk - 1), self.chunk_base.eq(self.chunk_base - e.chunk)]
        with m.Else():
            next_base = self.slice_base + e.slice_elems
            sync += [self.index.eq(0), self.step.eq(0), self.chunk.eq(first_chunk),
                     self.chunk_base.eq(first_base), self.slice_base.eq(next_base),
                     self.frame_off.eq(next_base), self.frames_left.eq(self.frames_left - self.fb)]
            with m.If(self.frames_left <= e.slice_frames):
                sync += self.done.eq(1)


class _Reader:
    """A stream `o` reading `left` consecutive words of a synchronous read port from `addr`."""

    def __init__(self, m, port, shape, name):
        self.o = stream.Signature(shape).create(path=(name,))
        self.addr = Signal(port.addr.shape(), name=f"{name}_addr")
        self.left = Signal(16, name=f"{name}_left")
        advance = ~self.o.valid | self.o.ready
        self.port = port
        m.d.comb += [port.addr.eq(self.addr), port.en.eq(advance), self.o.payload.eq(port.data)]
        self.load = Signal(name=f"{name}_load")
        self.load_addr = Signal(port.addr.shape(), name=f"{name}_load_addr")
        self.load_count = Signal(16, name=f"{name}_load_count")
        valid = Signal(name=f"{name}_valid")
        m.d.comb += self.o.valid.eq(valid)
        with m.If(self.load):
            m.d.sync += [self.addr.eq(self.load_addr), self.left.eq(self.load_count), valid.eq(0)]
        with m.Elif(advance):
            m.d.sync += valid.eq(self.left != 0)
            with m.If(self.left != 0):
                m.d.sync += [self.addr.eq(self.addr + 1), self.left.eq(self.left - 1)]


class RingEngine(wiring.Component):
    """One node of the ring all-reduce; see the module docstring.

    Parameters: `vector_depth` (words of the vector memory), `max_payload` (largest UDP payload, bytes),
    `window` (retransmission slots, a power of two), `mx_block` (MXINT8 block size, 32 or 16).
    """

    def __init__(self, *, vector_depth: int = 4096, max_payload: int = 1472, window: int = 16,
                 mx_block: int = MX_DEFAULT_BLOCK, max_slice_frames: int | None = None):
        self._MustUse__silence = True             # no "never used" warning for an object that failed
        if not isinstance(vector_depth, int) or vector_depth < 1:
            raise ValueError(f"vector_depth must be a positive integer, not {vector_depth!r}")
        if not isinstance(window, int) or window < 4 or window & (window - 1):
            raise ValueError(f"window must be a power of two ≥ 4, not {window!r}")
        if mx_block not in MX_BLOCK_SIZES:
            raise ValueError(f"mx_block must be one of {MX_BLOCK_SIZES}, not {mx_block!r}")
        if not isinstance(max_payload, int) or not HEADER_BYTES + 4 * mx_block < max_payload <= 9000:
            raise ValueError(f"max_payload must be in ({HEADER_BYTES + 4 * mx_block}, 9000], not {max_payload!r}")
        self.vector_depth = vector_depth
        self.max_payload = max_payload
        self.window = window
        self.mx_block = mx_block
        #: The largest F the host may set: window ≥ 3F + 1 (docs/nic.md).
        self.max_slice_frames = (window - 1) // 3 if max_slice_frames is None else max_slice_frames
        self.slot_bytes = 1 << (max_payload - HEADER_BYTES - 1).bit_length()
        self._MustUse__silence = False
        super().__init__({
            "rank": In(8), "world": In(8), "job": In(16),
            "chunk": In(32), "frame": In(16), "frames_per_chunk": In(16), "slice_frames": In(8),
            "rs_codec": In(2), "ag_codec": In(2),
            "timeout": In(32), "rto": In(32), "ack_every": In(8), "ack_delay": In(16),
            "start": In(1),
            "status": Out(2), "error": Out(4),
            "stats": Out(STATS_LAYOUT),
            "host_addr": In(range(vector_depth)), "host_wdata": In(32), "host_we": In(1), "host_rdata": Out(32),
            "tx_length": Out(stream.Signature(unsigned(16))),
            "tx_peer": Out(1),
            "tx": Out(stream.Signature(FrameByte)),
            "rx": In(stream.Signature(FrameByte)),
        })

    def payload_bytes(self, count, codec):
        shift = self.mx_block.bit_length() - 1
        return Mux(codec == Codec.FP32, count << 2, Mux(codec == Codec.BF16, count << 1, count + (count >> shift)))

    def elaborate(self, platform):
        m = Module()
        W = self.window

        # --- per-operation constants, latched at start ---------------------------------------------------
        self.world_m1 = Signal(8)
        self.last_step = Signal(8)                # 2(n − 1) − 1
        self.last_chunk_base = Signal(32)         # (n − 1)·C
        self.slice_elems = Signal(32)             # F·P
        pred = Signal(8)
        succ = Signal(8)
        own_base = Signal(32)                     # rank·C
        pred_base = Signal(32)                    # (rank − 1)·C
        status = Signal(2, init=Status.IDLE)
        error = Signal(4)
        busy = status == Status.BUSY
        m.d.comb += [self.status.eq(status), self.error.eq(error)]
        clear = Signal()                          # reset the datapath (start, abort)

        stats = Signal(STATS_LAYOUT)
        m.d.comb += self.stats.eq(stats)
        with m.If(busy):
            m.d.sync += stats.cycles.eq(stats.cycles + 1)

        # Schedules: what this node sends next, the oldest frame not yet acknowledged, what it expects.
        tx_s = _Schedule(m, self, "txs")
        base_s = _Schedule(m, self, "base")
        rx_s = _Schedule(m, self, "rxs")
        tx_high = Signal(32)                      # 1 + the highest sequence number sent
        ack_target = Signal(32)

        # --- memories ----------------------------------------------------------------------------------
        m.submodules.vector = vector = Memory(shape=32, depth=self.vector_depth, init=[])
        vec_job_r = vector.read_port()            # job: local operand; host reads while idle
        vec_tx_r = vector.read_port()             # send path: step-0 frames
        vec_w = vector.write_port()               # job: results; host writes while idle
        slot_depth = W * self.slot_bytes
        m.submodules.slots = slots = Memory(shape=8, depth=slot_depth, init=[])
        slot_r = slots.read_port()
        slot_w = slots.write_port()

        # --- datapath ------------------------------------------------------------------------------------
        m.submodules.dec_in = dec_in = ByteDecoder(self.mx_block)
        m.submodules.enc_out = enc_out = ByteEncoder(self.mx_block)
        m.submodules.dec_ag = dec_ag = ByteDecoder(self.mx_block)
        m.submodules.enc_tx = enc_tx = ByteEncoder(self.mx_block)
        m.submodules.adder = adder = ResetInserter(clear)(Fp32Adder(1))
        for codec in (dec_in, enc_out, dec_ag, enc_tx):
            m.d.comb += codec.clear.eq(clear)
        local = _Reader(m, vec_job_r, unsigned(32), "local")
        tx_local = _Reader(m, vec_tx_r, unsigned(32), "tx_local")
        slot_rd = _Reader(m, slot_r, unsigned(8), "slot_rd")
        with m.If(clear):
            m.d.comb += [local.load.eq(1), tx_local.load.eq(1), slot_rd.load.eq(1)]

        # Host access while not busy.
        m.d.comb += self.host_rdata.eq(vec_job_r.data)
        with m.If(~busy):
            m.d.comb += [vec_job_r.addr.eq(self.host_addr), vec_job_r.en.eq(1),
                         vec_w.addr.eq(self.host_addr), vec_w.data.eq(self.host_wdata),
                         vec_w.en.eq(self.host_we)]

        # --- the receive job: one in-order DATA frame ----------------------------------------------------
        job_decode = Signal()        # rx bytes → dec_in → adder(+local) → enc_out → X
        job_slot = Signal()          # X → slot
        job_result = Signal()        # X → dec_ag → vector memory
        job_slot_base = Signal(range(slot_depth))
        job_out_length = Signal(16)
        job_count = Signal(16)
        job_offset = Signal(32)
        slot_count = Signal(16)
        result_count = Signal(16)
        rx_payload_done = Signal()
        m.d.comb += [dec_in.codec.eq(self.rs_codec), dec_ag.codec.eq(self.ag_codec)]
        enc_out_codec = Signal(2)
        m.d.comb += enc_out.codec.eq(enc_out_codec)

        pay = stream.Signature(unsigned(8)).create(path=("pay",))   # rx payload bytes of an accepted frame
        x = stream.Signature(unsigned(8)).create(path=("x",))
        with m.If(job_decode):
            m.d.comb += [dec_in.i.valid.eq(pay.valid), dec_in.i.payload.eq(pay.payload),
                         pay.ready.eq(dec_in.i.ready),
                         x.valid.eq(enc_out.o.valid), x.payload.eq(enc_out.o.payload), enc_out.o.ready.eq(x.ready)]
        with m.Else():
            m.d.comb += [x.valid.eq(pay.valid), x.payload.eq(pay.payload), pay.ready.eq(x.ready)]
        # Join the decoded partial with the local element.
        join = dec_in.o.valid & local.o.valid
        m.d.comb += [adder.i.valid.eq(join), adder.i.payload[0].a.eq(dec_in.o.payload),
                     adder.i.payload[0].b.eq(local.o.payload),
                     dec_in.o.ready.eq(join & adder.i.ready), local.o.ready.eq(join & adder.i.ready),
                     enc_out.i.valid.eq(adder.o.valid), enc_out.i.payload.eq(adder.o.payload[0]),
                     adder.o.ready.eq(enc_out.i.ready)]
        # Tee X to the slot and the all-gather decoder.
        m.d.comb += x.ready.eq(~job_result | dec_ag.i.ready)
        m.d.comb += [dec_ag.i.valid.eq(x.valid & job_result), dec_ag.i.payload.eq(x.payload)]
        with m.If(x.valid & x.ready & job_slot):
            m.d.comb += [slot_w.en.eq(1), slot_w.addr.eq(job_slot_base + slot_count), slot_w.data.eq(x.payload)]
            m.d.sync += slot_count.eq(slot_count + 1)
        m.d.comb += dec_ag.o.ready.eq(1)
        with m.If(dec_ag.o.valid & busy):
            m.d.comb += [vec_w.en.eq(1), vec_w.addr.eq(job_offset + result_count), vec_w.data.eq(dec_ag.o.payload)]
            m.d.sync += result_count.eq(result_count + 1)
        job_complete = (rx_payload_done & (~job_slot | (slot_count == job_out_length))
                        & (~job_result | (result_count == job_count)))

        # --- receive parser ------------------------------------------------------------------------------
        header_bits = Signal(HEADER_LAYOUT.size)
        header = data.View(HEADER_LAYOUT, header_bits)
        hdr_count = Signal(range(HEADER_BYTES + 1))
        ended = Signal()                          # the datagram ended with its header
        pay_count = Signal(16)
        pay_length = Signal(16)
        ack_pending = Signal()
        ack_request = Signal()                    # comb: send an ACK soon
        accepted_unacked = Signal(8)
        ack_timer = Signal(16)
        progress = Signal()
        watchdog = Signal(32)
        rto_timer = Signal(32)
        rewind = Signal()
        acked = Signal()                          # comb: the oldest unacknowledged frame moved
        dupacks = Signal(2)
        fast_armed = Signal()
        fast_rewind = Signal()
        # A DATA frame came while we were not running: our predecessor started first and its frames were
        # lost on us. The first thing we send after starting is then an ACK expecting frame 0 (a hello),
        # which makes the predecessor go back at once instead of after `rto`.
        early = Signal()
        active = (status == Status.BUSY) | (status == Status.DONE)

        # What the expected frame turns into.
        rx_step = rx_s.step
        out_seq = rx_s.seq + rx_s.fb
        slot_free = out_seq < base_s.seq + W
        produces = rx_step != self.last_step
        m.d.comb += enc_out_codec.eq(Mux(rx_step + 1 >= self.world_m1, self.ag_codec, self.rs_codec))

        with m.FSM(name="rx_fsm"):
            with m.State("HEADER"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [header_bits.eq(Cat(header_bits[8:], self.rx.payload.data)),
                                 hdr_count.eq(hdr_count + 1)]
                    with m.If(hdr_count == HEADER_BYTES - 1):
                        m.d.sync += [hdr_count.eq(0), ended.eq(self.rx.payload.last)]
                        m.next = "DECIDE"
                    with m.Elif(self.rx.payload.last):
                        m.d.sync += hdr_count.eq(0)        # a runt: ignore it
            with m.State("DECIDE"):
                ours = (header.magic == MAGIC) & (header.version == VERSION) & (header.job == self.job) & active
                is_ack = ours & (header.kind == Kind.ACK) & (header.source == succ)
                is_data = ours & (header.kind == Kind.DATA) & (header.source == pred)
                take = (is_data & ~ended & busy & ~rx_s.done & (header.seq == rx_s.seq) & (~produces | slot_free)
                        & (header.length == rx_s.length) & (header.count == rx_s.count))
                with m.If(is_ack & (header.seq > ack_target) & (header.seq <= tx_high)):
                    m.d.sync += ack_target.eq(header.seq)
                with m.Elif(is_ack & (header.seq == ack_target) & (ack_target < tx_high)):
                    # A duplicate ACK: the successor saw a gap. The second one triggers a fast retransmit
                    # (once per acknowledged advance, so the frames still in flight do not trigger more).
                    # An ACK expecting frame 0 needs no second one: frame 0 was lost, or the successor
                    # started after our first frames reached it (its hello, below).
                    m.d.sync += dupacks.eq(dupacks + 1)
                    with m.If(((dupacks >= 1) | (header.seq == 0)) & fast_armed):
                        m.d.sync += [fast_rewind.eq(1), fast_armed.eq(0)]
                with m.If((header.magic == MAGIC) & (header.kind == Kind.DATA) & ~busy):
                    m.d.sync += early.eq(1)
                with m.If(take):
                    m.d.sync += [job_decode.eq(rx_step < self.world_m1),
                                 job_slot.eq(produces),
                                 job_result.eq(rx_step + 1 >= self.world_m1),
                                 job_slot_base.eq(out_seq[:W.bit_length() - 1] * self.slot_bytes),
                                 job_out_length.eq(self.payload_bytes(rx_s.count, enc_out_codec)),
                                 job_count.eq(rx_s.count), job_offset.eq(rx_s.offset),
                                 slot_count.eq(0), result_count.eq(0), rx_payload_done.eq(0),
                                 pay_count.eq(0), pay_length.eq(rx_s.length)]
                    m.d.comb += [local.load.eq(1), local.load_addr.eq(rx_s.offset),
                                 local.load_count.eq(Mux(rx_step < self.world_m1, rx_s.count, 0))]
                    m.next = "PAYLOAD"
                with m.Else():
                    with m.If(is_data):
                        m.d.sync += stats.frames_dropped.eq(stats.frames_dropped + 1)
                        with m.If(header.seq != rx_s.seq):
                            m.d.comb += ack_request.eq(1)   # a duplicate or a gap: tell the sender where we are
                    with m.If(ended):
                        m.next = "HEADER"
                    with m.Else():
                        m.next = "DRAIN"
            with m.State("PAYLOAD"):
                with m.If(self.start):
                    m.next = "DRAIN"            # a new operation: this frame belongs to the old one
                with m.Else():
                    m.d.comb += [pay.valid.eq(self.rx.valid), pay.payload.eq(self.rx.payload.data),
                                 self.rx.ready.eq(pay.ready)]
                with m.If(~self.start & self.rx.valid & self.rx.ready):
                    m.d.sync += pay_count.eq(pay_count + 1)
                    last_byte = pay_count == pay_length - 1
                    with m.If(last_byte & self.rx.payload.last):
                        m.d.sync += rx_payload_done.eq(1)
                        m.next = "FINISH"
                    with m.Elif(last_byte | self.rx.payload.last):
                        # Malformed (the UDP layer passed it, so the sender is broken): undo and drop.
                        m.d.comb += clear.eq(1)
                        m.d.sync += [stats.frames_dropped.eq(stats.frames_dropped + 1),
                                     job_slot.eq(0), job_result.eq(0)]
                        with m.If(self.rx.payload.last):
                            m.next = "HEADER"
                        with m.Else():
                            m.next = "DRAIN"
            with m.State("FINISH"):
                with m.If(~busy | self.start):
                    m.next = "HEADER"
                with m.Elif(job_complete):
                    m.d.sync += [stats.frames_accepted.eq(stats.frames_accepted + 1), job_slot.eq(0),
                                 job_result.eq(0), rx_payload_done.eq(0)]
                    m.d.comb += progress.eq(1)
                    rx_s.advance(pred, pred_base)
                    last_frame = (rx_s.step == self.last_step) & (rx_s.frames_left <= self.slice_frames) \
                        & (rx_s.index + 1 >= rx_s.fb)
                    with m.If((accepted_unacked + 1 >= self.ack_every) | last_frame):
                        m.d.comb += ack_request.eq(1)
                        m.d.sync += accepted_unacked.eq(0)
                    with m.Else():
                        m.d.sync += accepted_unacked.eq(accepted_unacked + 1)
                    m.next = "HEADER"
            with m.State("DRAIN"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid & self.rx.payload.last):
                    m.next = "HEADER"

        # Delayed ACK: no accepted frame waits more than `ack_delay` cycles (counted from the oldest one).
        with m.If(accepted_unacked == 0):
            m.d.sync += ack_timer.eq(0)
        with m.Elif(ack_timer >= self.ack_delay):
            m.d.comb += ack_request.eq(1)
            m.d.sync += [accepted_unacked.eq(0), ack_timer.eq(0)]
        with m.Else():
            m.d.sync += ack_timer.eq(ack_timer + 1)

        # --- acknowledgements received: the oldest unacknowledged frame catches up -----------------------
        with m.If(busy & (base_s.seq < ack_target) & ~base_s.done):
            base_s.advance(self.rank, own_base)
            m.d.comb += [progress.eq(1), acked.eq(1)]
            m.d.sync += [dupacks.eq(0), fast_armed.eq(1)]

        # --- send path ------------------------------------------------------------------------------------
        tx_header = Signal(HEADER_LAYOUT)
        tx_bits = Signal(HEADER_LAYOUT.size)
        tx_total = Signal(16)
        tx_pos = Signal(16)
        tx_from_local = Signal()
        peer = Signal()
        m.d.comb += [self.tx_peer.eq(peer), enc_tx.codec.eq(self.rs_codec)]
        m.d.comb += [enc_tx.i.valid.eq(tx_local.o.valid), enc_tx.i.payload.eq(tx_local.o.payload),
                     tx_local.o.ready.eq(enc_tx.i.ready)]
        available = (~tx_s.done & (tx_s.seq < base_s.seq + W)
                     & ((tx_s.step == 0) | (tx_s.seq - tx_s.fb < rx_s.seq)))

        tx_abort = Signal()
        tx_idle = Signal()
        with m.FSM(name="tx_fsm"):
            with m.State("IDLE"):
                m.d.comb += tx_idle.eq(1)
                with m.If(active & ack_pending):
                    m.d.sync += [tx_header.eq(HEADER_LAYOUT.const({"magic": MAGIC, "version": VERSION,
                                                                   "kind": Kind.ACK})),
                                 tx_header.job.eq(self.job), tx_header.source.eq(self.rank),
                                 tx_header.seq.eq(rx_s.seq), ack_pending.eq(0), peer.eq(1),
                                 tx_total.eq(HEADER_BYTES), stats.acks_sent.eq(stats.acks_sent + 1)]
                    m.next = "LENGTH"
                with m.Elif(busy & (rewind | fast_rewind)):
                    m.d.sync += [rewind.eq(0), fast_rewind.eq(0), rto_timer.eq(0)]
                    m.d.sync += tx_s.copy(base_s)
                with m.Elif(busy & available):
                    m.d.sync += [tx_header.eq(HEADER_LAYOUT.const({"magic": MAGIC, "version": VERSION,
                                                                   "kind": Kind.DATA})),
                                 tx_header.job.eq(self.job), tx_header.source.eq(self.rank),
                                 tx_header.codec.eq(tx_s.codec), tx_header.seq.eq(tx_s.seq),
                                 tx_header.phase.eq(tx_s.phase),
                                 tx_header.step.eq(Mux(tx_s.phase, tx_s.step - self.world_m1, tx_s.step)),
                                 tx_header.chunk.eq(tx_s.chunk), tx_header.length.eq(tx_s.length),
                                 tx_header.offset.eq(tx_s.offset), tx_header.count.eq(tx_s.count),
                                 peer.eq(0), tx_total.eq(HEADER_BYTES + tx_s.length),
                                 tx_from_local.eq(tx_s.step == 0),
                                 stats.frames_sent.eq(stats.frames_sent + 1)]
                    with m.If(tx_s.seq + 1 > tx_high):
                        m.d.sync += tx_high.eq(tx_s.seq + 1)
                    with m.Else():
                        m.d.sync += stats.retransmits.eq(stats.retransmits + 1)
                    with m.If(tx_s.step == 0):
                        m.d.comb += [tx_local.load.eq(1), tx_local.load_addr.eq(tx_s.offset),
                                     tx_local.load_count.eq(tx_s.count)]
                    with m.Else():
                        m.d.comb += [slot_rd.load.eq(1), slot_rd.load_count.eq(tx_s.length),
                                     slot_rd.load_addr.eq(tx_s.seq[:W.bit_length() - 1] * self.slot_bytes)]
                    tx_s.advance(self.rank, own_base)
                    m.next = "LENGTH"
            with m.State("LENGTH"):
                m.d.comb += [self.tx_length.valid.eq(1), self.tx_length.payload.eq(tx_total)]
                m.d.sync += [tx_bits.eq(tx_header), tx_pos.eq(0)]
                with m.If(self.tx_length.ready):
                    m.d.sync += stats.bytes_sent.eq(stats.bytes_sent + tx_total)
                    m.next = "BYTES"
            with m.State("BYTES"):
                in_header = tx_pos < HEADER_BYTES
                src_valid = Mux(tx_from_local, enc_tx.o.valid, slot_rd.o.valid)
                src_data = Mux(tx_from_local, enc_tx.o.payload, slot_rd.o.payload)
                m.d.comb += [self.tx.valid.eq(in_header | src_valid | tx_abort),
                             self.tx.payload.data.eq(Mux(in_header, tx_bits[:8], Mux(tx_abort, 0, src_data))),
                             self.tx.payload.last.eq(tx_pos == tx_total - 1)]
                with m.If(~in_header):
                    with m.If(tx_from_local):
                        m.d.comb += enc_tx.o.ready.eq(self.tx.ready)
                    with m.Else():
                        m.d.comb += slot_rd.o.ready.eq(self.tx.ready)
                with m.If(self.tx.valid & self.tx.ready):
                    m.d.sync += [tx_pos.eq(tx_pos + 1), tx_bits.eq(tx_bits >> 8)]
                    with m.If(tx_pos == tx_total - 1):
                        m.next = "IDLE"

        with m.If(ack_request):
            m.d.sync += ack_pending.eq(1)         # after the send path, which clears it when it sends one
        # A new operation while a datagram is half sent: finish it with zero bytes.
        with m.If(self.tx.valid & self.tx.ready & (tx_pos == tx_total - 1)):
            m.d.sync += tx_abort.eq(0)
        with m.If(self.start & ~tx_idle):
            m.d.sync += tx_abort.eq(1)

        # Retransmission timer: runs while frames are outstanding.
        with m.If(busy & (base_s.seq < tx_high) & ~acked):
            m.d.sync += rto_timer.eq(rto_timer + 1)
            with m.If(rto_timer >= self.rto):
                m.d.sync += [rewind.eq(1), rto_timer.eq(0)]
        with m.Else():
            m.d.sync += rto_timer.eq(0)

        # --- operation control ---------------------------------------------------------------------------
        with m.If(busy):
            with m.If(progress):
                m.d.sync += watchdog.eq(0)
            with m.Else():
                m.d.sync += watchdog.eq(watchdog + 1)
            with m.If(rx_s.done & base_s.done):
                m.d.sync += status.eq(Status.DONE)
            with m.Elif(watchdog >= self.timeout):
                m.d.sync += [status.eq(Status.ERROR), error.eq(ErrorCode.TIMEOUT)]

        n = self.world
        with m.If(self.start):
            m.d.comb += clear.eq(1)
            bad = ((n < 2) | (self.rank >= n) | (self.chunk == 0) | (self.frame == 0)
                   | (self.slice_frames == 0) | (self.slice_frames > self.max_slice_frames)
                   | (n * self.chunk > self.vector_depth)
                   | (self.frames_per_chunk * self.frame < self.chunk)
                   | ((self.frames_per_chunk - 1) * self.frame >= self.chunk)
                   | (self.payload_bytes(self.frame, self.rs_codec) + HEADER_BYTES > self.max_payload)
                   | (self.payload_bytes(self.frame, self.ag_codec) + HEADER_BYTES > self.max_payload))
            with m.If(bad):
                m.d.sync += [status.eq(Status.ERROR), error.eq(ErrorCode.BAD_CONFIG)]
            with m.Else():
                m.d.sync += [status.eq(Status.BUSY), error.eq(ErrorCode.NONE)]
            pred_rank = Mux(self.rank == 0, n - 1, self.rank - 1)
            m.d.sync += [
                self.world_m1.eq(n - 1), self.last_step.eq(2 * n - 3),
                self.last_chunk_base.eq((n - 1) * self.chunk), self.slice_elems.eq(self.slice_frames * self.frame),
                pred.eq(pred_rank), succ.eq(Mux(self.rank == n - 1, 0, self.rank + 1)),
                own_base.eq(self.rank * self.chunk), pred_base.eq(pred_rank * self.chunk),
                tx_high.eq(0), ack_target.eq(0), ack_pending.eq(early), early.eq(0), accepted_unacked.eq(0),
                ack_timer.eq(0),
                watchdog.eq(0), rto_timer.eq(0), rewind.eq(0), stats.eq(0),
                dupacks.eq(0), fast_armed.eq(1), fast_rewind.eq(0),
                job_slot.eq(0), job_result.eq(0), rx_payload_done.eq(0),
            ]
            m.d.sync += tx_s.reset(self.rank, self.rank * self.chunk)
            m.d.sync += base_s.reset(self.rank, self.rank * self.chunk)
            m.d.sync += rx_s.reset(pred_rank, pred_rank * self.chunk)
        return m
