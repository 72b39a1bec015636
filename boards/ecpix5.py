"""LambdaConcept ECPIX-5 with the LFE5UM5G-85F: host link over the FT2232's UART channel, the contraction
engine, and (with the NIC) the board's RGMII gigabit PHY.

Clock and rate: the 100 MHz oscillator feeds the PLL, which makes the SoC clock (50 MHz: the engine's
timing on this part sets it; see the build report) and, for the NIC, the 125 MHz GMII clock from the same
VCO. 3 Mbaud is 16.67 cycles per bit at 50 MHz (the fractional divisor makes it 16.6875, +0.1 %).
"""

from amaranth_boards.ecpix5 import ECPIX585Platform

from ..rtl.memory_map import SocConfig
from . import UartSocTop

__all__ = ["ECPIX5_CONFIG", "ECPIX5Top"]

ECPIX5_CONFIG = SocConfig(
    clock_hz=50_000_000,
    baud=3_000_000,
    scratch_bytes=64 * 1024,      # 32 of the 85F's 208 DP16KD
    max_transfer=4096,
    engine_rows=8, engine_cols=8, engine_width=8, engine_loops=8,
    engine_tile_m=64, engine_tile_n=64, engine_chunk_k=256, engine_queue=4,
    tensor_bytes=128 * 1024,      # 64 DP16KD; the engine's scratchpads take about 44 more
)


class ECPIX5Top(UartSocTop):
    platform_class = ECPIX585Platform
    config = ECPIX5_CONFIG
    use_pll = True
