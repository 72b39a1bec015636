"""The NIC on the SoC bus: a `RingEngine` with its register bank (`nic_format.NIC_REGISTERS`), its
vector memory as a bus region (word addressed, usable while the engine is not busy), and the
Ethernet/IPv4/UDP endpoint (rtl/udp.py) that carries the engine's datagrams on a GMII port.

The engine names the neighbour of each datagram (`tx_peer`: 0 the successor, 1 the predecessor); the
endpoint is given that neighbour's MAC, IPv4 address and UDP port from the registers. Received datagrams
from either neighbour go to the engine, which tells DATA from ACK by the tensornic header.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect

from .bus import BusSignature, RegisterBank
from .ethernet import GmiiSignature
from .nic_format import ETH_COUNTER_REGISTERS, Status
from .ring_engine import RingEngine
from .udp import UdpEndpoint

__all__ = ["NicCore"]


class NicCore(wiring.Component):
    def __init__(self, regs_region, *, vector_words: int, window: int = 16, max_payload: int = 1472,
                 mx_block: int = 32):
        self.regs_region = regs_region
        self.engine = RingEngine(vector_depth=vector_words, window=window, max_payload=max_payload,
                                 mx_block=mx_block)
        self.udp = UdpEndpoint(max_payload=max_payload)
        addr_width = max(1, (vector_words - 1).bit_length())
        super().__init__({
            "regs": In(BusSignature(max(1, (len(regs_region.registers) - 1).bit_length()))),
            "vector": In(BusSignature(addr_width)),
            "gmii_tx": Out(GmiiSignature()),
            "gmii_rx": In(GmiiSignature()),
            "busy": Out(1),           # an operation runs or is armed, or a datagram waits to be sent
            "cycles": In(32),         # the SoC's cycle counter (low word), for the timed start
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        m.submodules.udp = udp = self.udp
        m.submodules.bank = bank = RegisterBank(self.regs_region)
        connect(m, wiring.flipped(self.regs), bank.bus)
        # The bank updates `control` on the clock edge after its write strobe: start one cycle later.
        # control = 2 arms the timed start: the operation starts on the first cycle whose counter is at
        # or past `start_at` (modulo 2**32, within half the range), so a late arm starts at once.
        written = Signal()
        start = Signal()
        armed = Signal()
        due = Signal()
        since = Signal(32)
        m.d.sync += written.eq(bank.control_written)
        m.d.comb += [since.eq(self.cycles - bank.start_at), due.eq(~since[31])]
        with m.If(written):
            m.d.sync += armed.eq(bank.control[1] & ~bank.control[0])
        with m.Elif(armed & due):
            m.d.sync += armed.eq(0)
        m.d.comb += start.eq((written & bank.control[0]) | (armed & due & ~written))
        start_cycle = Signal(32)
        with m.If(start):
            m.d.sync += start_cycle.eq(self.cycles)
        m.d.comb += bank.start_cycle.eq(start_cycle)
        for name in ("rank", "world", "job", "chunk", "frame", "frames_per_chunk", "slice_frames", "timeout",
                     "rto", "ack_every", "ack_delay"):
            m.d.comb += getattr(engine, name).eq(getattr(bank, name))
        m.d.comb += [engine.rs_codec.eq(bank.codecs[0:2]), engine.ag_codec.eq(bank.codecs[2:4]),
                     engine.start.eq(start),
                     bank.status.eq(Mux(armed, Status.BUSY, engine.status)), bank.error.eq(engine.error),
                     bank.frames_sent.eq(engine.stats.frames_sent), bank.retransmits.eq(engine.stats.retransmits),
                     bank.frames_accepted.eq(engine.stats.frames_accepted),
                     bank.frames_dropped.eq(engine.stats.frames_dropped),
                     bank.acks_sent.eq(engine.stats.acks_sent), bank.op_cycles.eq(engine.stats.cycles),
                     bank.bytes_sent.eq(engine.stats.bytes_sent),
                     self.busy.eq((engine.status == 1) | armed | ~udp.tx_idle)]
        # Vector memory: the engine's host port has the timing of a BusMemory (data in the ack cycle).
        bus = self.vector
        ack = Signal()
        m.d.sync += ack.eq((bus.r_en | bus.w_en) & ~ack)
        m.d.comb += [bus.ack.eq(ack), engine.host_addr.eq(bus.addr), engine.host_wdata.eq(bus.w_data),
                     engine.host_we.eq(bus.w_en & ~ack)]
        with m.If(ack):
            m.d.comb += bus.r_data.eq(engine.host_rdata)
        # Addresses: ours, and the neighbour's the engine is sending to (held from tx_length on).
        m.d.comb += [udp.config.local_mac.eq(Cat(bank.mac_lo, bank.mac_hi[:16])),
                     udp.config.local_ip.eq(bank.ip), udp.config.local_port.eq(bank.udp_port[:16])]
        with m.If(engine.tx_peer):
            m.d.comb += [udp.tx_dst.mac.eq(Cat(bank.prev_mac_lo, bank.prev_mac_hi[:16])),
                         udp.tx_dst.ip.eq(bank.prev_ip), udp.tx_dst.port.eq(bank.prev_port[:16])]
        with m.Else():
            m.d.comb += [udp.tx_dst.mac.eq(Cat(bank.next_mac_lo, bank.next_mac_hi[:16])),
                         udp.tx_dst.ip.eq(bank.next_ip), udp.tx_dst.port.eq(bank.next_port[:16])]
        for register, counter in ETH_COUNTER_REGISTERS.items():
            m.d.comb += getattr(bank, register).eq(getattr(udp.counters, counter))
        connect(m, engine.tx_length, udp.tx_length)
        connect(m, engine.tx, udp.tx)
        connect(m, udp.rx, engine.rx)
        connect(m, udp.gmii_tx, wiring.flipped(self.gmii_tx))
        connect(m, wiring.flipped(self.gmii_rx), udp.gmii_rx)
        return m
