"""Benchmarks of the all-reduce NIC, measured on the cycle-accurate ring of engines (rtl/ring_link.RingFabric
under Verilator): cycles of an FP32 all-reduce at n = 4 over 1 GbE links against the ring bound
2(n−1)/n · S / (B·η) (goal ≥ 0.95), and the effective-bandwidth speed-up of MXINT8 (goal ≥ 3.5×).

B = 1 byte per cycle (8 bits at 125 MHz), η = 1472 / (1472 + 66): Ethernet, IPv4 and UDP framing of a
full-size datagram (the tensornic header is counted as our overhead, not in η). S = 4·L bytes.

The vector is 127 KiB per rank (63 KiB with `quick`): the per-operation tail (the last frame's trip
through the sender's and the receiver's store-and-forward UDP layers, the link latency and its ACK,
about 3.3 frame-times) is what keeps small all-reduces below the bound; see docs/nic.md.

`python -m tensornic.bench_nic [--quick] [-v]` prints them (-v: the raw measurements).
"""

import json
import sys
import tempfile
from pathlib import Path

from .bench import Result

__all__ = ["bench_nic", "ring_bound_cycles"]

COMMAND = "python -m tensornic.bench_nic"
ETA = 1472 / (1472 + 66)
LATENCY = 200                    # link model latency in cycles (1.6 µs: a switch hop and PHYs)


def ring_bound_cycles(n: int, nbytes: int, compression: float = 1.0) -> float:
    """The ring all-reduce bound in cycles at 1 byte per cycle per link."""
    return 2 * (n - 1) / n * nbytes / (compression * ETA)


def bench_nic(quick=False, ack_every=4) -> list:
    from .rtl.ring_link import RingFabric
    from .sim import verilator

    n = 4
    depth = 16384 if quick else 32768
    length = depth - 256
    engine = dict(vector_depth=depth, max_payload=1472, window=16)
    params = {"n": n, "latency": LATENCY, "mx_block": 32, **engine}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        verilator.run_cocotb(lambda: RingFabric(n, latency=LATENCY, **engine), name=f"ring_bench{n}",
                             test_module="tensornic.sim.test_ring", params=params, testcase="bench",
                             knobs={"n": n, "length": length, "out": str(out), "slice_frames": 5,
                                    "ack_every": ack_every,
                                    "pairs": [["fp32", "fp32"], ["mxint8", "mxint8"], ["bf16", "bf16"]]})
        rows = json.loads(out.read_text())
    if "-v" in sys.argv:
        print(json.dumps(rows, indent=1))
    size = 4 * length
    bound = ring_bound_cycles(n, size)
    by_pair = {(r["rs"], r["ag"]): r for r in rows}
    fp32 = by_pair[("fp32", "fp32")]["cycles"]
    mx = by_pair[("mxint8", "mxint8")]["cycles"]
    bf = by_pair[("bf16", "bf16")]["cycles"]
    kib = size / 1024
    return [
        Result(f"all-reduce fp32 n={n} {kib:.0f} KiB: ring bound / achieved", bound / fp32, "×", 0.95,
               command=COMMAND),
        Result(f"all-reduce fp32 n={n} {kib:.0f} KiB: cycles", fp32, "cycles", bound, higher_is_better=False,
               command=COMMAND),
        Result(f"all-reduce mxint8 n={n}: effective bandwidth / fp32 limit", bound / mx, "×", 3.5,
               command=COMMAND),
        Result(f"all-reduce bf16 n={n}: effective bandwidth / fp32 limit", bound / bf, "×", None,
               command=COMMAND),
    ]


if __name__ == "__main__":
    ack = int(sys.argv[sys.argv.index("--ack-every") + 1]) if "--ack-every" in sys.argv else 4
    for result in bench_nic(quick="--quick" in sys.argv, ack_every=ack):
        ratio = f"  ({result.ratio:.3f} of goal {result.goal:g})" if result.goal else ""
        print(f"{result.name}: {result.value:.4g} {result.unit}{ratio}")
