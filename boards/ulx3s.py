"""Radiona ULX3S with the LFE5U-85F: host link over the FT231X, a contraction array sized to the part,
and the all-reduce NIC with its GMII port looped back (the board has no Ethernet).

Clock and rate: the PLL makes the SoC clock, 37.5 MHz, from the 25 MHz oscillator (× 3 / 2). The FT231X's
fastest rate, 3 Mbaud, is then 12.5 cycles per bit — an exact divisor (0 % error), above the 8 the boards
keep. The clock follows nextpnr's post-placement estimate for this design on the LFE5U-85F-6 (36.7 MHz; the
ECPIX-5's build gained 28 % from that estimate to the routed result); 60 MHz, tried first, is out of reach.

Array size: the engine puts each MAC on one MULT18X18D; the LFE5U-85F has 156, and the wide multiplies of
the engine's address arithmetic and the NIC's ring schedule (4 and 6 `$mul`s) take 15 more, so at most 141
MACs fit: 10 × 14 = 140 synthesizes (155 of 156 DSPs, 178 of 208 block RAMs, 38 % of the LUTs). Neither it
nor 10 × 10 = 100 MACs (115 DSPs, 170 block RAMs, 34 % of the LUTs) finished place and route in the time
this was measured: nextpnr placed both and was routing (10 × 14: 35 000 of 161 000 arcs after 32 minutes,
with about one re-route in five), so the largest array that meets timing is not known yet. This
configuration (10 × 10 at 37.5 MHz) is the one to build next; see docs/boards.md.

NIC self-test: the NIC's GMII transmit side drives its own receive side (`UartSocTop.elaborate_nic`), so
every frame the NIC sends comes straight back to it; see docs/boards.md for what that exercises.
"""

from amaranth.lib import io
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from ..rtl.memory_map import SocConfig
from . import UartSocTop

__all__ = ["ULX3S_CONFIG", "ULX3STop"]

ULX3S_CONFIG = SocConfig(
    clock_hz=37_500_000,
    baud=3_000_000,
    scratch_bytes=32 * 1024,
    max_transfer=4096,
    engine_rows=10, engine_cols=10, engine_width=8, engine_loops=8,
    engine_tile_m=40, engine_tile_n=40, engine_chunk_k=256, engine_queue=4,
    tensor_bytes=64 * 1024,
    nic_vector_words=4 * 1024,    # 16 KiB: the self-test needs no more
    nic_window=16, nic_max_payload=1472, nic_mx_block=32,
)


class ULX3STop(UartSocTop):
    platform_class = ULX3S_85F_Platform
    config = ULX3S_CONFIG
    use_pll = True

    def elaborate_board(self, m, platform):
        # Hold the ESP32's GPIO0 strap high so that a reset of the ESP32 (which shares the board) boots its
        # firmware rather than its ROM download mode.
        esp32 = platform.request("esp32", 0, dir="-")
        m.submodules.esp32_gpio0_buffer = gpio0 = io.Buffer("o", esp32.gpio0)
        m.d.comb += gpio0.o.eq(1)
