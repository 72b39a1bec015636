"""Tensor memory: the contraction engine's operand/result store, also host-accessible on the SoC bus.

A true-dual-port RAM of 64-bit words (block RAM on FPGAs). Port 1 serves the engine's 64-bit `ld` load
stream (read only). Port 2 is shared, with the host bus first: bus requests (32-bit word address, read or
write) are answered one cycle later like every other bus memory; in all other cycles port 2 serves the
engine's `wb` stream (32-bit reads and writes). Engine requests wait (ready low) while the bus uses the
port, and responses are queued so the engine may apply backpressure to them.
"""

from amaranth import Module, Signal, Mux, Cat
from amaranth.lib import wiring, stream, memory, fifo
from amaranth.lib.wiring import In, Out

from .bus import BusSignature
from .contraction_engine import WbRequest

__all__ = ["TensorMemory"]


class TensorMemory(wiring.Component):
    def __init__(self, size_bytes):
        if size_bytes < 4096 or size_bytes & (size_bytes - 1):
            raise ValueError(f"tensor memory size {size_bytes} must be a power of two ≥ 4096")
        self.size_bytes = size_bytes
        self.addr_bits = size_bytes.bit_length() - 1
        super().__init__({
            "bus": In(BusSignature(self.addr_bits - 2)),
            "ld_req": In(stream.Signature(self.addr_bits - 3)),
            "ld_resp": Out(stream.Signature(64)),
            "wb_req": In(stream.Signature(WbRequest(self.addr_bits - 2))),
            "wb_resp": Out(stream.Signature(32)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=64, depth=self.size_bytes // 8, init=[])
        ld_port = mem.read_port()
        rd2 = mem.read_port()
        wr2 = mem.write_port(granularity=32)

        # Port 1: loads. A response FIFO keeps data the engine has not taken yet.
        m.submodules.ld_fifo = ld_fifo = fifo.SyncFIFOBuffered(width=64, depth=4)
        ld_inflight = Signal()
        ld_accept = Signal()
        m.d.comb += [ld_accept.eq(self.ld_req.valid & (ld_fifo.w_level + ld_inflight < ld_fifo.depth - 1)),
                     self.ld_req.ready.eq(ld_fifo.w_level + ld_inflight < ld_fifo.depth - 1),
                     ld_port.addr.eq(self.ld_req.payload)]
        m.d.sync += ld_inflight.eq(ld_accept)
        m.d.comb += [ld_fifo.w_data.eq(ld_port.data), ld_fifo.w_en.eq(ld_inflight)]
        wiring.connect(m, ld_fifo.r_stream, wiring.flipped(self.ld_resp))

        # Port 2: host bus first, then the engine's write-back stream.
        bus = self.bus
        bus_request = (bus.r_en | bus.w_en) & ~bus.ack
        m.d.sync += bus.ack.eq(bus_request)
        bus_lane = Signal()
        m.d.sync += bus_lane.eq(bus.addr[0])
        with m.If(bus.ack):
            m.d.comb += bus.r_data.eq(Mux(bus_lane, rd2.data[32:], rd2.data[:32]))

        m.submodules.wb_fifo = wb_fifo = fifo.SyncFIFOBuffered(width=32, depth=4)
        wb_inflight = Signal()
        wb_lane = Signal()
        req = self.wb_req.payload
        space = wb_fifo.w_level + wb_inflight < wb_fifo.depth - 1
        wb_ok = ~bus_request & (req.write | space)
        m.d.comb += self.wb_req.ready.eq(wb_ok)
        wb_accept = self.wb_req.valid & wb_ok
        with m.If(bus_request):
            m.d.comb += [rd2.addr.eq(bus.addr[1:]), wr2.addr.eq(bus.addr[1:]),
                         wr2.data.eq(Cat(bus.w_data, bus.w_data)),
                         wr2.en.eq(Mux(bus.w_en, Mux(bus.addr[0], 0b10, 0b01), 0))]
        with m.Else():
            m.d.comb += [rd2.addr.eq(req.addr[1:]), wr2.addr.eq(req.addr[1:]),
                         wr2.data.eq(Cat(req.data, req.data)),
                         wr2.en.eq(Mux(wb_accept & req.write, Mux(req.addr[0], 0b10, 0b01), 0))]
        m.d.sync += [wb_inflight.eq(wb_accept & ~req.write), wb_lane.eq(req.addr[0])]
        m.d.comb += [wb_fifo.w_data.eq(Mux(wb_lane, rd2.data[32:], rd2.data[:32])), wb_fifo.w_en.eq(wb_inflight)]
        wiring.connect(m, wb_fifo.r_stream, wiring.flipped(self.wb_resp))
        return m
