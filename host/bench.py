"""`make bench`: measured numbers, each printed with its goal and the ratio against it.

Spine benchmarks:
- simulated-device speed: simulated cycles per wall-clock second while the device is busy (bit-level UART
  transfer, so the simulator, not the host, is the bottleneck); goal ≥ 1 M cycles/s;
- host throughput through the pty to the simulated device (byte-stream mode);
- protocol efficiency of 4 KiB bulk transfers at 3 Mbaud: payload bytes / wire bytes (goal ≥ 0.90), and
  the same in time: payload bits at the line rate / simulated device time for the whole exchange.
Results are also written to build/bench.json.
"""

import dataclasses
import json
import os
import time
from pathlib import Path


@dataclasses.dataclass
class Result:
    name: str
    value: float
    unit: str
    goal: float | None = None        # the stated limit or peer
    higher_is_better: bool = True
    command: str = "make bench"

    @property
    def ratio(self):
        if not self.goal:
            return None
        if self.higher_is_better:
            return self.value / self.goal
        return self.goal / self.value if self.value else float("inf")


def _transfers(dev, nbytes, rounds):
    base, _ = dev.regions["scratch"]
    data = os.urandom(nbytes)
    for _ in range(rounds):
        dev.write(base, data)
        if dev.read(base, nbytes) != data:
            raise AssertionError("benchmark data corrupted")


def bench_spine(quick=False):
    import tensornic
    from tensornic.rtl.link_format import REQUEST_HEADER_BYTES, RESPONSE_HEADER_BYTES, CRC_BYTES

    results = []
    rounds = 2 if quick else 8

    # Simulator speed and time efficiency: bit-level UART at the device's 3 Mbaud.
    with tensornic.open("sim-uart") as dev:
        clock = dev.info["clock_hz"]
        baud = dev.info["baud"]
        _transfers(dev, 4096, 1)                     # warm up
        stats0 = dataclasses.replace(dev.link.stats)
        c0 = dev.cycles()
        t0 = time.perf_counter()
        _transfers(dev, 4096, rounds)
        wall = time.perf_counter() - t0
        cycles = dev.cycles() - c0
        stats = dev.link.stats
        payload = stats.payload_bytes - stats0.payload_bytes
        wire = (stats.bytes_sent - stats0.bytes_sent) + (stats.bytes_received - stats0.bytes_received)
    results.append(Result("simulated device speed (busy, bit-level UART)", cycles / wall, "cycles/s", 1e6))
    results.append(Result("4 KiB bulk protocol efficiency (payload/wire bytes)", payload / wire, "", 0.90))
    line_time = payload * 10 / baud                  # 8N1: 10 bits per byte
    device_time = cycles / clock
    results.append(Result("4 KiB bulk time efficiency at 3 Mbaud (line time/device time)",
                          line_time / device_time, "", 0.90))
    formula = 4096 / (REQUEST_HEADER_BYTES + 4096 + CRC_BYTES + RESPONSE_HEADER_BYTES)
    results.append(Result("4 KiB bulk efficiency from the frame format", formula, "", 0.90))

    # Host throughput through the pty (byte-stream mode: the host side is the bottleneck).
    with tensornic.open("sim") as dev:
        _transfers(dev, 64 * 1024, 1)
        c0 = dev.cycles()
        t0 = time.perf_counter()
        n = 64 * 1024
        _transfers(dev, n, rounds)
        wall = time.perf_counter() - t0
        cycles = dev.cycles() - c0
    results.append(Result("host ↔ simulated device payload throughput (byte stream)",
                          2 * n * rounds / wall, "B/s", baud / 10))
    results.append(Result("simulated device speed (byte stream, incl. host turnaround)", cycles / wall,
                          "cycles/s", 1e6))
    return results


def bench_formats(quick=False):
    from .bench_formats import bench_formats as run
    return run(quick=quick)


def bench_engine(quick=False):
    from .bench_engine import bench_engine as run
    return run(quick=quick)


def bench_tapp(quick=False):
    from .bench_tapp import bench_tapp as run
    return run(quick=quick)


def bench_nic(quick=False):
    from .bench_nic import bench_nic as run
    return run(quick=quick)


def bench_numerics(quick=False):
    from .bench_numerics import bench_numerics as run
    return run(quick=quick)


def bench_torch(quick=False):
    from .bench_torch import bench_torch as run
    return run(quick=quick)


BENCHMARKS = {"spine": bench_spine, "formats": bench_formats, "engine": bench_engine, "tapp": bench_tapp,
              "nic": bench_nic, "numerics": bench_numerics, "torch": bench_torch}


def _format(value, unit):
    if unit in ("cycles/s", "B/s"):
        for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {prefix}{unit}"
        return f"{value:.1f} {unit}"
    return f"{value:.4f}" + (f" {unit}" if unit else "")


def main(args=None):
    from rich.console import Console
    from rich.table import Table

    quick = bool(getattr(args, "quick", False))
    console = Console()
    table = Table(title="tensornic benchmarks" + (" (quick)" if quick else ""))
    for column in ("benchmark", "measured", "goal / peer", "ratio"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    report = {}
    for group, bench in BENCHMARKS.items():
        with console.status(f"running {group} benchmarks"):
            results = bench(quick=quick)
        for r in results:
            ratio = r.ratio
            style = "" if ratio is None else "green" if ratio >= 1 else "red"
            table.add_row(r.name, _format(r.value, r.unit),
                          "" if r.goal is None else _format(r.goal, r.unit),
                          "" if ratio is None else f"[{style}]{ratio:.2f}×[/{style}]")
            report[r.name] = {"value": r.value, "unit": r.unit, "goal": r.goal, "ratio": ratio}
    console.print(table)
    out = Path("build") / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    console.print(f"written to {out}")
    return 0
