"""1BitSquared iCEBreaker (iCE40UP5K): the 12 MHz oscillator clocks the SoC, the FT2232H's second channel
carries the host link.

Clock and rate: 12 MHz with no PLL. 1.5 Mbaud is 12 MHz / 8, so the FPGA's divisor is exactly 8 cycles
per bit and the FT2232H (which derives its rates from 12 MHz as well) hits it exactly too; 3 Mbaud would be
only 4 cycles per bit. Scratch memory: 64 KiB, built from two of the UP5K's four SB_SPRAM256KA by
`BusMemory` (the part's 30 block RAMs hold only 15 KiB; they keep the bridge buffer and the ID ROM).

No contraction engine: the smallest one (2×2 array, 8×8 tiles, 4 KiB tensor memory) with the SoC needs
8 155 LUT4 of the part's 5 280 (1.54×), 6 763 flip-flops (1.28×) and 60 of 30 block RAMs (Yosys,
`synth_ice40 -dsp`); see docs/boards.md.
"""

from amaranth_boards.icebreaker import ICEBreakerPlatform

from ..rtl.memory_map import SocConfig
from . import UartSocTop

__all__ = ["ICEBREAKER_CONFIG", "ICEBreakerTop"]

ICEBREAKER_CONFIG = SocConfig(
    clock_hz=12_000_000,
    baud=1_500_000,
    scratch_bytes=64 * 1024,   # two SPRAMs side by side (16K words of 32 bits)
    max_transfer=4096,
)


class ICEBreakerTop(UartSocTop):
    platform_class = ICEBreakerPlatform
    config = ICEBREAKER_CONFIG
