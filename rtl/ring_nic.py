"""The NIC on the SoC bus: a `RingEngine` with its register bank (`nic_format.NIC_REGISTERS`) and its
vector memory as a bus region (word addressed, usable while the engine is not busy), plus the message
interface of the UDP endpoint.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from .bus import BusSignature, RegisterBank
from .ring_engine import FrameByte, RingEngine

__all__ = ["NicCore"]


class NicCore(wiring.Component):
    def __init__(self, regs_region, *, vector_words: int, window: int = 16, max_payload: int = 1472,
                 mx_block: int = 32):
        self.regs_region = regs_region
        self.engine = RingEngine(vector_depth=vector_words, window=window, max_payload=max_payload,
                                 mx_block=mx_block)
        addr_width = max(1, (vector_words - 1).bit_length())
        super().__init__({
            "regs": In(BusSignature(max(1, (len(regs_region.registers) - 1).bit_length()))),
            "vector": In(BusSignature(addr_width)),
            "tx_length": Out(stream.Signature(16)),
            "tx_peer": Out(1),
            "tx": Out(stream.Signature(FrameByte)),
            "rx": In(stream.Signature(FrameByte)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        m.submodules.bank = bank = RegisterBank(self.regs_region)
        connect(m, wiring.flipped(self.regs), bank.bus)
        # The bank updates `control` on the clock edge after its write strobe: start one cycle later.
        written = Signal()
        start = Signal()
        m.d.sync += written.eq(bank.control_written)
        m.d.comb += start.eq(written & bank.control[0])
        for name in ("rank", "world", "job", "chunk", "frame", "frames_per_chunk", "slice_frames", "timeout",
                     "rto", "ack_every", "ack_delay"):
            m.d.comb += getattr(engine, name).eq(getattr(bank, name))
        m.d.comb += [engine.rs_codec.eq(bank.codecs[0:2]), engine.ag_codec.eq(bank.codecs[2:4]),
                     engine.start.eq(start),
                     bank.status.eq(engine.status), bank.error.eq(engine.error),
                     bank.frames_sent.eq(engine.stats.frames_sent), bank.retransmits.eq(engine.stats.retransmits),
                     bank.frames_accepted.eq(engine.stats.frames_accepted),
                     bank.frames_dropped.eq(engine.stats.frames_dropped),
                     bank.acks_sent.eq(engine.stats.acks_sent), bank.op_cycles.eq(engine.stats.cycles),
                     bank.bytes_sent.eq(engine.stats.bytes_sent),
                     self.busy.eq(engine.status == 1)]
        # Vector memory: the engine's host port has the timing of a BusMemory (data in the ack cycle).
        bus = self.vector
        ack = Signal()
        m.d.sync += ack.eq((bus.r_en | bus.w_en) & ~ack)
        m.d.comb += [bus.ack.eq(ack), engine.host_addr.eq(bus.addr), engine.host_wdata.eq(bus.w_data),
                     engine.host_we.eq(bus.w_en & ~ack)]
        with m.If(ack):
            m.d.comb += bus.r_data.eq(engine.host_rdata)
        connect(m, engine.tx_length, wiring.flipped(self.tx_length))
        connect(m, engine.tx, wiring.flipped(self.tx))
        connect(m, wiring.flipped(self.rx), engine.rx)
        m.d.comb += self.tx_peer.eq(engine.tx_peer)
        return m
