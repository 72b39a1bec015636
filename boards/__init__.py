"""Board tops and per-board configurations; bitstreams with the YoWASP toolchain.

Each board module (`ulx3s`, `ecpix5`, `icebreaker`) holds the board's `SocConfig` sized to its FPGA and a
top that requests the board's clock and USB-UART pins from the amaranth-boards platform and instantiates the
same `Soc` the simulator runs. A configuration with the NIC (`nic_vector_words > 0`) gives the SoC a GMII
port; the top connects it to the board's Ethernet PHY (ECPIX-5: `RgmiiAdapter`) or, on a board without
Ethernet, loops its transmit side back into its receive side (`UartSocTop.elaborate_nic`). `build` turns
a top into a bitstream, a register-map JSON and a report.
"""

from amaranth import ClockDomain, ClockSignal, Elaboratable, Module
from amaranth.lib import io, wiring

from ..rtl.memory_map import SocConfig
from ..rtl.soc import Soc
from ..rtl.uart import MIN_CYCLES_PER_BIT

__all__ = ["UartSocTop", "RELIABLE_CYCLES_PER_BIT"]

#: Fewest clock cycles per UART bit a board configuration may use: enough for the receiver's 3-sample vote
#: around the bit's middle to sit well clear of the edges (the UART itself is specified down to 4).
RELIABLE_CYCLES_PER_BIT = 8
assert RELIABLE_CYCLES_PER_BIT >= MIN_CYCLES_PER_BIT


class UartSocTop(Elaboratable):
    """A board top: the board's oscillator clocks `sync`, the board's USB-UART carries the host link.

    The `sync` domain is left to the platform, which drives it from its default clock with its own
    power-on reset (and, on iCE40, the delay block RAM needs after configuration). Subclasses name the
    platform and configuration, and may drive board-specific pins in `elaborate_board`.
    """

    #: The amaranth-boards platform class of the board; set by subclasses.
    platform_class = None
    #: The board's SoC configuration; set by subclasses.
    config: SocConfig = None
    #: The UART resource (name, number) that reaches the host over USB.
    uart_resource = ("uart", 0)
    #: ECP5 boards whose oscillator is not the SoC clock: make `sync` (at config.clock_hz) with the PLL.
    use_pll = False
    #: Where the NIC's GMII port goes (for reports); set by boards that attach it to a PHY.
    nic_attachment = "GMII transmit looped back into GMII receive in the SoC clock domain (self-test)"

    def __init__(self, config: SocConfig | None = None):
        config = self.config if config is None else config
        if not isinstance(config, SocConfig):
            self._MustUse__silence = True   # a top that failed to construct is not an unused design
            raise TypeError(f"config must be a SocConfig, not {config!r}")
        cycles_per_bit = config.clock_hz / config.baud
        if cycles_per_bit < RELIABLE_CYCLES_PER_BIT:
            self._MustUse__silence = True
            raise ValueError(f"{type(self).__name__}: baud={config.baud} gives {cycles_per_bit:.2f} cycles "
                             f"per bit at {config.clock_hz / 1e6:g} MHz; boards use at least "
                             f"{RELIABLE_CYCLES_PER_BIT}")
        self.config = config

    def elaborate(self, platform):
        if platform is None:
            raise TypeError(f"{type(self).__name__} is a board top: elaborate it with its platform "
                            f"({self.platform_class.__name__}); simulations use Soc directly")
        clock_hz = int(platform.default_clk_frequency)
        if not self.use_pll and clock_hz != self.config.clock_hz:
            raise ValueError(f"{type(self).__name__}: the platform clocks sync at {clock_hz} Hz but the "
                             f"SoC is configured for clock_hz={self.config.clock_hz}")
        m = Module()
        if self.use_pll:
            domains, phases = self.pll_domains()
            self.elaborate_pll(m, platform, domains, phases)
        name, number = self.uart_resource
        uart = platform.request(name, number, dir="-")
        m.submodules.uart_rx_buffer = rx_buffer = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buffer = tx_buffer = io.Buffer("o", uart.tx)
        m.submodules.soc = soc = Soc(self.config)
        # The SoC synchronises uart_rx itself (2-FF), so a plain input buffer is enough here.
        m.d.comb += [
            soc.uart_rx.eq(rx_buffer.i),
            tx_buffer.o.eq(soc.uart_tx),
        ]
        if self.config.has_nic:
            self.elaborate_nic(m, platform, soc)
        self.elaborate_board(m, platform)
        return m

    def pll_domains(self):
        """({domain: Hz}, {domain: phase in degrees}) the PLL makes; `sync` first (it is the feedback)."""
        return {"sync": self.config.clock_hz}, {}

    def elaborate_nic(self, m, platform, soc):
        """Connect the SoC's NIC port. By default (a board without Ethernet) its GMII transmit side is looped
        straight back into its receive side, in the SoC's clock domain: a self-test of the NIC's Ethernet
        path (see docs/boards.md)."""
        wiring.connect(m, soc.nic_gmii_tx, soc.nic_gmii_rx)

    def elaborate_pll(self, m, platform, domains, phases=None):
        """Drive `domains` ({name: Hz}) from the board's oscillator through the ECP5 PLL."""
        from .clocks import Ecp5Pll
        clk = platform.request(platform.default_clk, dir="-")
        m.submodules.oscillator_buffer = osc = io.Buffer("i", clk)
        m.domains.oscillator = ClockDomain("oscillator", reset_less=True)
        m.d.comb += ClockSignal("oscillator").eq(osc.i)
        for name in domains:
            m.domains += ClockDomain(name)
        m.submodules.pll = pll = Ecp5Pll("oscillator", platform.default_clk_frequency, domains, phases)
        return pll

    def elaborate_board(self, m, platform):
        """Drive board-specific pins (straps, enables). Nothing by default."""
