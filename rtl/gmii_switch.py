"""A store-and-forward Ethernet switch at GMII level, for cluster simulations (the ring's "ordinary gigabit
switch", docs/nic.md): n ports, each a GMII pair — `rx<i>` takes what node i transmits, `tx<i>` is what node
i receives.

Forwarding: a frame (the bytes after the SFD, FCS included) is stored whole in its input port's buffer,
then sent on the output port named by the last byte of its destination MAC (a static MAC table: node i's
MAC ends in i, as `tensornic.nic` assigns by default); frames for any other MAC are dropped and counted
as `unknown`. A frame leaves no sooner than `latency` cycles after its last byte arrived (PHYs, cables and
the switch's own pipeline), with a fresh preamble, SFD and at least a 12-byte gap after it. Each output
serves the inputs with a frame for it round robin, one whole frame at a time; frames from one input
leave in the order they came (head-of-line blocking, as in an input-buffered switch).

Fault injection, per frame and seeded (xorshift32 per input port): drop with probability `drop / 2**32`,
or flip one bit among its first 64 bytes with probability `corrupt / 2**32` (the receiver's FCS check
catches it); `dead[i]` drops everything node i sends. A frame that does not fit in its input buffer is
dropped (`overflow`), never sent truncated.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .ethernet import GmiiSignature, MIN_IFG_BYTES

__all__ = ["GmiiSwitch", "PORT_STATS_LAYOUT"]

PREAMBLE = (0x55,) * 7 + (0xD5,)

#: Counters per input port (frames node i sent into the switch), all wrapping at 2**32.
PORT_STATS_LAYOUT = data.StructLayout({
    "frames": 32,       # frames received from the node
    "bytes": 32,        # their bytes after the SFD
    "dropped": 32,      # dropped by fault injection or a dead link
    "corrupted": 32,    # forwarded with one bit flipped
    "unknown": 32,      # destination MAC not in the table
    "overflow": 32,     # did not fit in the input buffer
})

_Descriptor = data.StructLayout({
    "length": 16, "out": 8, "drop": 1, "corrupt": 1, "flip_byte": 6, "flip_bit": 3, "due": 32,
})


def _xorshift(x):
    x = x ^ (x << 13)[:32]
    x = x ^ (x >> 17)
    return x ^ (x << 5)[:32]


class GmiiSwitch(wiring.Component):
    def __init__(self, n: int, *, latency: int = 200, buffer_bytes: int = 16384):
        if not 1 <= n <= 256:
            raise ValueError(f"a switch has 1…256 ports, not {n}")
        if latency < 0:
            raise ValueError(f"latency must be ≥ 0 cycles, not {latency}")
        self.n, self.latency, self.buffer_bytes = n, latency, buffer_bytes
        ports = {"seed": In(32), "load_seed": In(1), "drop": In(32), "corrupt": In(32), "dead": In(n),
                 "idle": Out(1)}
        for i in range(n):
            ports[f"rx{i}"] = In(GmiiSignature())
            ports[f"tx{i}"] = Out(GmiiSignature())
            ports[f"stats{i}"] = Out(PORT_STATS_LAYOUT)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n = self.n
        now = Signal(32)
        m.d.sync += now.eq(now + 1)
        inputs = [self._input(m, i, now) for i in range(n)]
        busy = [~inp["idle"] for inp in inputs]
        # Who reads each input's buffer: the output serving it, or its own discard of a dropped frame.
        readers = [[inp["discard"]] for inp in inputs]
        for o in range(n):
            busy.append(~self._output(m, o, inputs, readers, now))
        for i, inp in enumerate(inputs):
            r_en = 0
            for term in readers[i]:
                r_en = r_en | term
            m.d.comb += [inp["bytes"].r_en.eq(r_en)]
        idle = 1
        for b in busy:
            idle = idle & ~b
        m.d.comb += self.idle.eq(idle)
        return m

    def _input(self, m, i, now):
        """Capture node i's frames into its buffer; one descriptor per frame, after its last byte."""
        gmii = getattr(self, f"rx{i}")
        stats = getattr(self, f"stats{i}")
        m.submodules[f"bytes{i}"] = byte_fifo = SyncFIFOBuffered(width=8, depth=self.buffer_bytes)
        m.submodules[f"desc{i}"] = desc_fifo = SyncFIFOBuffered(width=_Descriptor.size, depth=32)

        rng = Signal(32, init=1)
        r1 = Signal(32)
        r2 = Signal(32)
        m.d.comb += [r1.eq(_xorshift(rng)), r2.eq(_xorshift(r1))]
        with m.If(self.load_seed):
            m.d.sync += rng.eq(Mux(self.seed == 0, 1, self.seed ^ (0x9E3779B9 * (i + 1) & 0xFFFFFFFF)))

        length = Signal(16)
        out = Signal(8)
        overflow = Signal()
        in_frame = Signal()       # past the SFD
        en_prev = Signal()
        m.d.sync += en_prev.eq(gmii.en)
        m.d.comb += byte_fifo.w_data.eq(gmii.data)
        with m.If(gmii.en & in_frame):
            with m.If(byte_fifo.w_rdy & ~overflow):
                m.d.comb += byte_fifo.w_en.eq(1)
                m.d.sync += length.eq(length + 1)
                with m.If(length == 5):
                    m.d.sync += out.eq(gmii.data)
            with m.Else():
                m.d.sync += overflow.eq(1)
        with m.If(gmii.en & ~in_frame & (gmii.data == 0xD5)):
            m.d.sync += [in_frame.eq(1), length.eq(0), overflow.eq(0)]

        # The frame ended (TX_EN fell): decide its fate. Bytes of an overflowing frame are in the buffer
        # already, so it still gets a descriptor (marked drop) for the reader to discard them.
        desc = Signal(_Descriptor)
        unknown = out >= self.n
        draw_drop = r1 < self.drop
        m.d.comb += [desc.length.eq(length), desc.out.eq(out),
                     desc.drop.eq(overflow | unknown | self.dead[i] | draw_drop),
                     desc.corrupt.eq(r2 < self.corrupt), desc.flip_byte.eq(r2[8:14]), desc.flip_bit.eq(r2[16:19]),
                     desc.due.eq(now + self.latency),
                     desc_fifo.w_data.eq(desc)]
        with m.If(~gmii.en & en_prev & in_frame):
            m.d.sync += [in_frame.eq(0), rng.eq(r2)]
            with m.If(length != 0):
                m.d.comb += desc_fifo.w_en.eq(1)     # 32 frames deep: never full while bytes fit
                m.d.sync += [stats.frames.eq(stats.frames + 1), stats.bytes.eq(stats.bytes + length)]
                with m.If(overflow):
                    m.d.sync += stats.overflow.eq(stats.overflow + 1)
                with m.Elif(unknown):
                    m.d.sync += stats.unknown.eq(stats.unknown + 1)
                with m.Elif(self.dead[i] | draw_drop):
                    m.d.sync += stats.dropped.eq(stats.dropped + 1)
                with m.Elif(r2 < self.corrupt):
                    m.d.sync += stats.corrupted.eq(stats.corrupted + 1)

        # Discard dropped frames from the head of the queue.
        head = Signal(_Descriptor)
        m.d.comb += head.eq(desc_fifo.r_data)
        discard = Signal()
        left = Signal(16)
        discarding = Signal()
        with m.If(~discarding & desc_fifo.r_rdy & head.drop):
            m.d.sync += [discarding.eq(1), left.eq(head.length)]
        with m.If(discarding):
            with m.If(left == 0):
                m.d.comb += desc_fifo.r_en.eq(1)
                m.d.sync += discarding.eq(0)
            with m.Elif(byte_fifo.r_rdy):
                m.d.comb += discard.eq(1)
                m.d.sync += left.eq(left - 1)
        ready = Signal()     # a frame at the head, due, for some output
        m.d.comb += ready.eq(desc_fifo.r_rdy & ~head.drop & ~discarding & ~(now - head.due)[31])
        idle = Signal()
        m.d.comb += idle.eq(~in_frame & ~gmii.en & ~desc_fifo.r_rdy & ~byte_fifo.r_rdy)
        return {"bytes": byte_fifo, "desc": desc_fifo, "head": head, "ready": ready, "discard": discard,
                "idle": idle}

    def _output(self, m, o, inputs, readers, now):
        """Serve the inputs whose head frame is for output o, round robin; returns this output's idle."""
        n = self.n
        gmii = getattr(self, f"tx{o}")
        want = Signal(n)
        m.d.comb += want.eq(Cat(inp["ready"] & (inp["head"].out == o) for inp in inputs))
        last = Signal(range(n), init=n - 1)         # the input served last
        pick = Signal(range(n))
        found = Signal()
        # Round robin: the first wanting input after `last`.
        for start in range(n):
            with m.If(last == start):
                for k in reversed(range(1, n + 1)):
                    cand = (start + k) % n
                    with m.If(want[cand]):
                        m.d.comb += [pick.eq(cand), found.eq(1)]
        src = Signal(range(n))
        count = Signal(16)
        length = Signal(16)
        flip = Signal(8)
        flip_byte = Signal(6)
        corrupt = Signal()
        serving = Signal()
        byte = Signal(8)
        # The byte at the head of the served input's buffer.
        with m.Switch(src):
            for i, inp in enumerate(inputs):
                with m.Case(i):
                    m.d.comb += byte.eq(inp["bytes"].r_data)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(found):
                    head = Signal(_Descriptor)
                    with m.Switch(pick):
                        for i, inp in enumerate(inputs):
                            with m.Case(i):
                                m.d.comb += head.eq(inp["head"])
                    m.d.sync += [src.eq(pick), last.eq(pick), count.eq(0), length.eq(head.length),
                                 corrupt.eq(head.corrupt), flip_byte.eq(head.flip_byte),
                                 flip.eq(1 << head.flip_bit)]
                    m.next = "PREAMBLE"
            with m.State("PREAMBLE"):
                m.d.comb += [gmii.en.eq(1), gmii.data.eq(Mux(count == 7, 0xD5, 0x55))]
                m.d.sync += count.eq(count + 1)
                with m.If(count == 7):
                    m.d.sync += count.eq(0)
                    m.next = "DATA"
            with m.State("DATA"):
                # The whole frame is buffered (its descriptor follows its last byte), so a byte is always
                # there: one per cycle, TX_EN never drops inside a frame.
                m.d.comb += [serving.eq(1), gmii.en.eq(1),
                             gmii.data.eq(byte ^ Mux(corrupt & (count == flip_byte), flip, 0))]
                m.d.sync += count.eq(count + 1)
                with m.If(count + 1 == length):
                    m.d.sync += count.eq(0)
                    m.next = "GAP"
            with m.State("GAP"):
                m.d.sync += count.eq(count + 1)
                with m.If(count == MIN_IFG_BYTES - 1):
                    m.next = "IDLE"
        done = Signal()
        m.d.comb += done.eq(serving & (count + 1 == length))
        for i, inp in enumerate(inputs):
            readers[i].append(serving & (src == i))
            with m.If(done & (src == i)):
                m.d.comb += inp["desc"].r_en.eq(1)
        return fsm.ongoing("IDLE") & ~found
