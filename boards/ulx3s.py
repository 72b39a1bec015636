"""Radiona ULX3S with the LFE5U-85F: the 25 MHz oscillator clocks the SoC, the FT231X carries the host link.

Clock and rate: the SoC runs straight from the 25 MHz oscillator (no PLL). The FT231X's fastest rate,
3 Mbaud, is 8.33 cycles per bit there; the fractional divisor makes it 8.3125 (+0.25 %), well inside the
receiver's tolerance, so a PLL would buy neither an exact rate nor needed timing margin.
"""

from amaranth.lib import io
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from ..rtl.memory_map import SocConfig
from . import UartSocTop

__all__ = ["ULX3S_CONFIG", "ULX3STop"]

ULX3S_CONFIG = SocConfig(
    clock_hz=25_000_000,
    baud=3_000_000,
    scratch_bytes=64 * 1024,   # 32 of the 85F's 208 DP16KD block RAMs
    max_transfer=4096,
)


class ULX3STop(UartSocTop):
    platform_class = ULX3S_85F_Platform
    config = ULX3S_CONFIG

    def elaborate_board(self, m, platform):
        # Hold the ESP32's GPIO0 strap high so that a reset of the ESP32 (which shares the board) boots its
        # firmware rather than its ROM download mode.
        esp32 = platform.request("esp32", 0, dir="-")
        m.submodules.esp32_gpio0_buffer = gpio0 = io.Buffer("o", esp32.gpio0)
        m.d.comb += gpio0.o.eq(1)
