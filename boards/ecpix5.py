"""LambdaConcept ECPIX-5 with the LFE5UM5G-85F: host link over the FT2232's UART channel, the contraction
engine, and the NIC on the board's RGMII gigabit PHY.

Clock and rate: the 100 MHz oscillator feeds the PLL, which makes the SoC clock. With the NIC it is the
GMII clock itself, 125 MHz: the NIC's transmitter writes one byte per SoC cycle onto the wire, so a slower
SoC clock would not be gigabit Ethernet (the receive side crosses from the PHY's clock into the SoC clock
through the RgmiiAdapter's elastic buffer, which only absorbs ppm differences). 3 Mbaud is 41.67 cycles per
bit at 125 MHz (divisor 41.6875, +0.04 %).

RGMII skews (facts of the board, as LiteX's ECPIX-5 target configures them: no FPGA delay on receive, 2 ns
on the transmit clock): the PHY delays its receive clock, so receive data arrive centre-aligned; it does not
delay the transmit clock, so the FPGA does. The PLL makes a second 125 MHz output 90° (2.0 ns) behind
`sync`, and only the `tx_clk` DDR register runs on it (`RgmiiAdapter(tx_clk_domain=...)`): the clock edge
leaves the pin 2 ns after the data changed, in the middle of the data eye.

The PHY's reset (active low, pin C13) is held for `PHY_RESET_MS` after the PLL locks; its management
interface (MDC/MDIO) is not used: the PHY starts from its strap defaults (auto-negotiation, 10/100/1000),
and the link partner (a gigabit switch port) must come up at 1000 Mb/s (the adapter speaks only gigabit
RGMII; docs/boards.md).
"""

from amaranth import Signal
from amaranth.lib import io, wiring
from amaranth_boards.ecpix5 import ECPIX585Platform

from ..rtl.memory_map import SocConfig
from ..rtl.rgmii import RgmiiAdapter
from . import UartSocTop

__all__ = ["ECPIX5_CONFIG", "ECPIX5Top", "GMII_HZ", "RGMII_TX_CLOCK_PHASE", "PHY_RESET_MS"]

#: The GMII byte clock at 1 Gb/s.
GMII_HZ = 125_000_000
#: How far the RGMII transmit clock lags the data, in degrees of its 8 ns period (90° = 2.0 ns).
RGMII_TX_CLOCK_PHASE = 90
#: PHY reset pulse after the PLL locks (the PHY wants ≥ 10 ms after its supplies are stable).
PHY_RESET_MS = 20

ECPIX5_CONFIG = SocConfig(
    clock_hz=GMII_HZ,
    baud=3_000_000,
    scratch_bytes=32 * 1024,
    max_transfer=4096,
    engine_rows=8, engine_cols=8, engine_width=8, engine_loops=8,
    engine_tile_m=32, engine_tile_n=32, engine_chunk_k=256, engine_queue=4,
    tensor_bytes=64 * 1024,
    nic_vector_words=8 * 1024,    # 32 KiB: 8 Ki FP32 elements per piece (the host cuts longer vectors)
    nic_window=16, nic_max_payload=1472, nic_mx_block=32,
)


class ECPIX5Top(UartSocTop):
    platform_class = ECPIX585Platform
    config = ECPIX5_CONFIG
    use_pll = True
    nic_attachment = ("RGMII gigabit PHY through RgmiiAdapter (transmit clock 2 ns late from a 90° PLL "
                      "output, receive delay from the PHY)")

    def pll_domains(self):
        domains = {"sync": self.config.clock_hz}
        phases = {}
        if self.config.has_nic:
            if self.config.clock_hz != GMII_HZ:
                raise ValueError(f"ECPIX5Top: with the NIC the SoC clock is the GMII clock, {GMII_HZ} Hz, "
                                 f"not clock_hz={self.config.clock_hz} (gigabit RGMII moves one byte per "
                                 f"cycle)")
            domains["rgmii_txc"] = GMII_HZ
            phases["rgmii_txc"] = RGMII_TX_CLOCK_PHASE
        return domains, phases

    def elaborate_nic(self, m, platform, soc):
        pins = platform.request("eth_rgmii", 0, dir="-")
        m.submodules.rgmii = rgmii = RgmiiAdapter(pins, tx_clk_domain="rgmii_txc", rx_clk_hz=GMII_HZ)
        wiring.connect(m, soc.nic_gmii_tx, rgmii.gmii_tx)
        wiring.connect(m, rgmii.gmii_rx, soc.nic_gmii_rx)

        # PHY reset: asserted from configuration until PHY_RESET_MS after the SoC clock runs.
        m.submodules.phy_reset_buffer = reset = io.Buffer("o", pins.rst)     # PinsN: o = 1 holds reset
        m.submodules.phy_mdc_buffer = mdc = io.Buffer("o", pins.mdc)
        count = self.config.clock_hz // 1000 * PHY_RESET_MS
        timer = Signal(range(count + 1), init=count)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        m.d.comb += [reset.o.eq(timer != 0), mdc.o.eq(0)]
