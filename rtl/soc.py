"""The SoC top: UART → host bridge → bus → ID ROM, control/status registers, scratch memory, and (when the
configuration has one) the contraction engine with its tensor memory.

The same `Soc` goes into every board (which wraps its `uart_rx`/`uart_tx` in I/O buffers) and into the
simulated device. With `byte_port=True` (simulation only) it also exposes the bridge's byte streams
directly, selected by `use_byte_port`, so a harness can skip bit-level UART timing for speed; the register
map is identical either way.
"""

from amaranth import C, Module, Signal
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out, connect

from .bridge import HostBridge
from .bus import BusDecoder, BusMemory, BusRom, RegisterBank
from .memory_map import SocConfig, soc_memory_map
from .uart import UartPhy, DIVISOR_BITS


class Soc(wiring.Component):
    def __init__(self, config: SocConfig = SocConfig(), *, byte_port=False):
        self.config = config
        self.memory_map = soc_memory_map(config)
        self.byte_port = byte_port
        members = {
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
        }
        if byte_port:
            members.update({
                "use_byte_port": In(1),
                "host_rx": In(stream.Signature(8)),
                "host_tx": Out(stream.Signature(8)),
                "link_idle": Out(1),        # nothing in progress: only input can change anything
                "link_receiving": Out(1),   # inside a request frame, waiting for more bytes
            })
        if config.has_nic:
            # The NIC's Ethernet port (GMII, in the SoC's clock domain): to a PHY adapter or a switch model.
            from .ethernet import GmiiSignature
            members.update({
                "nic_gmii_tx": Out(GmiiSignature()),
                "nic_gmii_rx": In(GmiiSignature()),
                "nic_busy": Out(1),
            })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        mmap = self.memory_map
        cfg = self.config

        m.submodules.uart = uart = UartPhy()
        m.submodules.bridge = bridge = HostBridge(mmap, cfg.max_transfer)
        m.submodules.decoder = decoder = BusDecoder(len(bridge.bus.addr), mmap.regions)
        m.submodules.rom = rom = BusRom(mmap.rom_words(), mmap.region("id").size)
        m.submodules.csr = csr = RegisterBank(mmap.region("csr"))
        m.submodules.scratch = scratch = BusMemory(mmap.region("scratch").size)
        connect(m, bridge.bus, decoder.bus)
        connect(m, decoder.id, rom.bus)
        connect(m, decoder.csr, csr.bus)
        connect(m, decoder.scratch, scratch.bus)
        engine_busy = C(0, 1)
        if cfg.has_engine:
            from .contraction_engine import ContractionEngine
            from .tensor_memory import TensorMemory
            m.submodules.engine = engine = ContractionEngine(**cfg.engine_params())
            m.submodules.tensor = tensor = TensorMemory(cfg.tensor_bytes)
            connect(m, decoder.engine, engine.regs)
            connect(m, decoder.engine_desc, engine.desc)
            connect(m, decoder.tensor, tensor.bus)
            connect(m, engine.ld_req, tensor.ld_req)
            connect(m, tensor.ld_resp, engine.ld_resp)
            connect(m, engine.wb_req, tensor.wb_req)
            connect(m, tensor.wb_resp, engine.wb_resp)
            engine_busy = engine.busy
        if cfg.has_nic:
            from .ring_nic import NicCore
            m.submodules.nic = nic = NicCore(mmap.region("nic"), vector_words=cfg.nic_vector_words,
                                             window=cfg.nic_window, max_payload=cfg.nic_max_payload,
                                             mx_block=cfg.nic_mx_block)
            connect(m, decoder.nic, nic.regs)
            connect(m, decoder.nic_vector, nic.vector)
            connect(m, nic.gmii_tx, wiring.flipped(self.nic_gmii_tx))
            connect(m, wiring.flipped(self.nic_gmii_rx), nic.gmii_rx)
            m.d.comb += [self.nic_busy.eq(nic.busy)]

        # Host byte path: the UART, or (simulation) the harness's byte streams.
        m.d.comb += uart.rx.eq(self.uart_rx)
        m.d.comb += self.uart_tx.eq(uart.tx)
        if self.byte_port:
            with m.If(self.use_byte_port):
                connect(m, wiring.flipped(self.host_rx), bridge.rx)
                connect(m, bridge.tx, wiring.flipped(self.host_tx))
            with m.Else():
                connect(m, uart.o, bridge.rx)
                connect(m, bridge.tx, uart.i)
        else:
            connect(m, uart.o, bridge.rx)
            connect(m, bridge.tx, uart.i)

        # A new UART divisor takes effect once the write's response has left the UART.
        divisor = Signal(DIVISOR_BITS, init=csr.uart_divisor.init)
        pending = Signal()
        with m.If(csr.uart_divisor_written):
            m.d.sync += pending.eq(1)
        with m.Elif(pending & bridge.idle & uart.idle):
            m.d.sync += [divisor.eq(csr.uart_divisor), pending.eq(0)]
        m.d.comb += uart.divisor.eq(divisor)
        if self.byte_port:
            m.d.comb += [self.link_idle.eq(bridge.idle & uart.idle & ~pending & ~engine_busy),
                         self.link_receiving.eq(bridge.receiving & uart.idle)]

        # The idle timeout never undercuts two byte-times (here 2 × divisor ≈ 3.2 byte-times at 10 bits
        # per byte), or a careless write could drop every frame and lock the host out.
        resync = Signal(32)
        floor = Signal(32)
        m.d.comb += floor.eq(divisor << 1)
        with m.If((csr.link_resync_cycles != 0) & (csr.link_resync_cycles < floor)):
            m.d.comb += resync.eq(floor)
        with m.Else():
            m.d.comb += resync.eq(csr.link_resync_cycles)

        # Free-running cycle counter; reading cycles_lo latches the high word for cycles_hi.
        cycles = Signal(64)
        cycles_hi = Signal(32)
        m.d.sync += cycles.eq(cycles + 1)
        with m.If(csr.cycles_lo_read):
            m.d.sync += cycles_hi.eq(cycles[32:])

        if cfg.has_nic:
            m.d.comb += nic.cycles.eq(cycles[:32])
        m.d.comb += [
            csr.cycles_lo.eq(cycles[:32]),
            csr.cycles_hi.eq(cycles_hi),
            csr.uart_framing_errors.eq(uart.framing_errors),
            csr.uart_overruns.eq(uart.overruns),
            bridge.resync_cycles.eq(resync),
            csr.link_requests.eq(bridge.requests),
            csr.link_header_errors.eq(bridge.header_errors),
            csr.link_payload_errors.eq(bridge.payload_errors),
            csr.link_resyncs.eq(bridge.resyncs),
        ]
        return m
