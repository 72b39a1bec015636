"""The `tensornic` command line: info, regs, demo, bench, bitstream, program, lint, map, model, train-compare."""

import argparse
import contextlib
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn, \
    DownloadColumn
from rich.table import Table

from .errors import TensornicError

console = Console()


def _add_target(parser):
    parser.add_argument("--port", default="sim",
                        help="serial port of a board (e.g. /dev/ttyUSB0), or 'sim' / 'sim-uart' for the "
                             "simulated device (default: sim)")
    parser.add_argument("--baud", type=int, default=None, help="line rate for a serial port")
    parser.add_argument("--timeout", type=float, default=0.25, help="per-transaction timeout in seconds")


@contextlib.contextmanager
def _status_spinner():
    """A status callback for slow steps (Verilator builds) shown as a spinner."""
    current = {"status": None}

    def update(message):
        if current["status"] is None:
            current["status"] = console.status(message)
            current["status"].start()
        else:
            current["status"].update(message)

    try:
        yield update
    finally:
        if current["status"] is not None:
            current["status"].stop()


def open_device(args, config=None):
    """Open the device `--port` names; `config` picks the simulated device's or emulator's configuration."""
    import tensornic
    options = {"config": config} if config is not None and args.port in ("sim", "sim-uart", "emulator") else {}
    with _status_spinner() as status:
        return tensornic.open(args.port, baud=args.baud, timeout=args.timeout, status=status, **options)


def transfer_progress():
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, transient=True)


def print_info(dev):
    table = Table(title=f"tensornic device on {getattr(dev.transport, 'port', '?')}", show_header=False)
    for key, value in dev.info.items():
        text = f"{value:#010x}" if key in ("magic", "map_hash") else f"{value:,}" if isinstance(value, int) \
            else str(value)
        table.add_row(key, text)
    for name, (base, size) in dev.regions.items():
        table.add_row(f"region {name}", f"{base:#010x} … {base + size - 1:#010x} ({size:,} bytes)")
    console.print(table)


def cmd_info(args):
    with open_device(args) as dev:
        print_info(dev)
        # Which board configuration the device was built from (the map hash covers every parameter).
        from .boards.build import BOARDS
        from .rtl.memory_map import soc_memory_map
        matches = [name for name, board in BOARDS.items()
                   if soc_memory_map(board.config).hash == dev.info.get("map_hash")]
        if matches:
            console.print(f"configuration: the {', '.join(matches)} bitstream of this package "
                          f"(make bitstream BOARD={matches[0]})")
        elif args.port not in ("sim", "sim-uart", "emulator"):
            console.print("configuration: not one of this package's board configurations (a bitstream built "
                          "from another configuration or version)")


def cmd_regs(args):
    with open_device(args) as dev:
        table = Table(title="registers")
        table.add_column("name")
        table.add_column("address")
        table.add_column("value", justify="right")
        values = dev.registers()
        for name, value in values.items():
            table.add_row(name, f"{dev.register_address(name):#06x}", f"{value:#010x}  {value:,}")
        console.print(table)


def round_trip(dev, nbytes, seed=0, progress_label="round trip"):
    """Write `nbytes` random bytes to scratch and read them back; returns (ok, seconds, cycles)."""
    import numpy as np
    base, size = dev.regions["scratch"]
    data = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    back = bytearray()
    c0 = dev.cycles()
    t0 = time.perf_counter()
    with transfer_progress() as progress:
        task = progress.add_task(progress_label, total=2 * nbytes)
        for offset in range(0, nbytes, size):
            chunk = data[offset: offset + size]
            dev.link.progress = lambda done, total, o=offset: progress.update(task, completed=2 * o + done)
            dev.write(base, chunk)
            dev.link.progress = lambda done, total, o=offset, n=len(chunk): progress.update(
                task, completed=2 * o + n + done)
            back += dev.read(base, len(chunk))
        dev.link.progress = None
    seconds = time.perf_counter() - t0
    cycles = dev.cycles() - c0
    return bytes(back) == data, seconds, cycles


def cmd_demo(args):
    from .engine import engine_sim_config
    console.print("[bold]tensornic demo[/bold]: open the device, show its identity, round-trip a buffer, "
                  "run a tensor contraction on its engine, then an all-reduce on a simulated 4-node cluster.")
    with open_device(args, config=engine_sim_config()) as dev:
        print_info(dev)
        nbytes = args.bytes
        ok, seconds, cycles = round_trip(dev, nbytes)
        if not ok:
            raise TensornicError("the data read back differs from what was written")
        console.print(f"round trip of {nbytes:,} bytes: [green]identical[/green]; "
                      f"{2 * nbytes / seconds / 1e3:,.1f} kB/s through the link "
                      f"({seconds:.2f} s, {cycles:,} device cycles"
                      + (f", {cycles / seconds / 1e6:.2f} M simulated cycles/s)" if args.port.startswith("sim")
                         else ")"))
        s = dev.link.stats
        console.print(f"link: {s.transactions} transactions, {s.retries} retries, "
                      f"payload efficiency {s.payload_bytes / max(1, s.bytes_sent + s.bytes_received):.3f}")
        from .bench_tapp import demo_contraction
        demo_contraction(console, dev)
    from .demo_allreduce import demo_allreduce
    demo_allreduce(console)


def cmd_bench(args):
    from .bench import main as bench_main
    return bench_main(args)


def _print_build(result):
    table = Table(title=f"{result['board']}: {result['bitstream']}")
    table.add_column("resource")
    table.add_column("used", justify="right")
    table.add_column("available", justify="right")
    for name, (used, avail) in result["resources"].items():
        table.add_row(name, str(used), str(avail))
    for clock, (achieved, target) in result["fmax_mhz"].items():
        table.add_row(f"Fmax {clock}", f"{achieved:.1f} MHz", f"target {target:.1f} MHz")
    table.add_row("build time", f"{result['seconds'].get('total', 0):.0f} s", "")
    console.print(table)
    console.print(f"report: {result['report']}", markup=False)


def cmd_bitstream(args):
    from .boards.build import BOARDS, BuildError, BuildFailures, build_all, build_bitstream
    def progress(line):
        console.print(line, markup=False, highlight=False)
    names = sorted(BOARDS) if args.board == "all" else [args.board]
    try:
        if len(names) == 1:
            _print_build(build_bitstream(names[0], progress=progress))
        else:
            for result in build_all(names, progress=progress).values():
                _print_build(result)
    except BuildFailures as error:
        for result in error.results.values():
            _print_build(result)
        console.print(f"error: {error}", markup=False, highlight=False)
        return 1
    except BuildError as error:
        # nextpnr's net names contain brackets, which rich would read as markup.
        console.print(f"error: {type(error).__name__}: {error}", markup=False, highlight=False)
        return 1


def cmd_program(args):
    from .boards.build import program
    result = program(args.board, bitstream=args.bitstream, flash=args.flash,
                     progress=lambda line: console.print(line, markup=False, highlight=False))
    console.print(f"{result['board']}: loaded {result['bitstream']} into its {result['target']}; check it with "
                  f"tensornic info --port <its serial port>", markup=False, highlight=False)


def cmd_lint(args):
    from .sim.lint import lint_all
    failures = lint_all(console=console)
    return 1 if failures else 0


def cmd_map(args):
    from .rtl.memory_map import SocConfig, soc_memory_map
    config = SocConfig()
    if args.board:
        from .boards.build import BOARDS
        config = BOARDS[args.board].config
    print(soc_memory_map(config).to_json())


def cmd_model(args):
    from .scaling_model import run
    return run(args, console)


def cmd_train_compare(args):
    from .train_compare import run
    return run(args, console)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tensornic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="print a device's identity (config ROM) and memory map")
    _add_target(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("regs", help="print every register of a device")
    _add_target(p)
    p.set_defaults(func=cmd_regs)

    p = sub.add_parser("demo", help="open a device, print its info, round-trip a buffer, print throughput")
    _add_target(p)
    p.add_argument("--bytes", type=int, default=256 * 1024, help="bytes to round-trip (default 256 KiB)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="run the benchmarks and print ratios against their goals")
    p.add_argument("--quick", action="store_true", help="smaller runs (for CI smoke checks)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bitstream", help="build a board's bitstream with the YoWASP toolchain "
                                         "(board name, or 'all' for every board)")
    p.add_argument("board")
    p.set_defaults(func=cmd_bitstream)

    p = sub.add_parser("program", help="load a built bitstream onto a connected board (openFPGALoader)")
    p.add_argument("board")
    p.add_argument("--bitstream", default=None, help="bitstream file (default: build/<board>/)")
    p.add_argument("--flash", action="store_true",
                   help="write the configuration flash (kept at power-off) instead of SRAM")
    p.set_defaults(func=cmd_program)

    p = sub.add_parser("lint", help="Verilator lint of every generated design (rules waived by name)")
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser("map", help="print the register/memory map as JSON")
    p.add_argument("--board", default=None, help="a board's configuration instead of the simulator's")
    p.set_defaults(func=cmd_map)

    from .scaling_model import add_arguments as add_model_arguments
    p = sub.add_parser("model", help="all-reduce scaling model: times, bus bandwidth, speed-up table and plot")
    add_model_arguments(p)
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("train-compare", help="train a small MLP on 4 local gloo processes with DDP's "
                       "all-reduce and the NIC's codecs; print losses and bytes per step, plot the curves")
    from .train_compare import add_arguments as train_compare_arguments
    train_compare_arguments(p)
    p.set_defaults(func=cmd_train_compare)

    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except (TensornicError, KeyError, ValueError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        console.print(f"[red]error:[/red] {type(exc).__name__}: {message}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
