"""Benchmarks of the all-reduce NIC, measured on the simulated cluster (`tensornic.sim.cluster`: whole SoCs,
each NIC behind its UDP endpoint, GMII ports through a store-and-forward switch model; 1 GbE = one byte per
cycle at 125 MHz, switch latency 200 cycles = 1.6 µs), driven through each node's host link like boards.

- FP32 all-reduce at n = 4: the ring bound 2(n−1)/n · S / (B·η) over the achieved cycles (goal ≥ 0.95);
  B = 1 byte per cycle, η = 1472 / (1472 + 66) (Ethernet, IPv4 and UDP framing of a full-size datagram; the
  tensornic header is our overhead, not in η), S = 4·L bytes. MXINT8's effective bandwidth against the same
  FP32 limit (goal ≥ 3.5×).
- The scaling model (host/scaling_model.py) calibrated against all-reduces at n = 2…8 (several sizes and
  codecs): the model error per n (goal ≤ 3 %).

One cluster of 8 nodes serves every n (the first n nodes form the ring), so one Verilator build; each
node has 512 KiB of NIC memory (`vector_words` is a generator parameter; the boards have 32–128 KiB), so
the headline all-reduce of 511 KiB per rank runs as one operation, and the same at 127 KiB shows what a
smaller NIC memory costs (the ring's fill and drain, a few frame times, weigh more). Every node starts on
the same cycle (`nic.start_at`: the nodes share the model's clock), so the measurement is the cycles from
that start to the last node's done.
`python -m tensornic.bench_nic [--quick] [-v]` prints them (-v: the raw measurements).
"""

import json
import sys
import tempfile
from pathlib import Path

from .bench import Result
from .scaling_model import framing_efficiency

__all__ = ["bench_nic", "ring_bound_cycles", "measure", "calibration_runs"]

COMMAND = "python -m tensornic.bench_nic"
ETA = framing_efficiency(1472)   # 1472 / (1472 + 66)
LATENCY = 200                    # switch model latency in cycles (1.6 µs: PHYs, cables, one switch hop)
FABRIC_NODES = 8
WINDOW = 16
SLICE_FRAMES = (WINDOW - 1) // 3
ACK_EVERY = 4


def ring_bound_cycles(n: int, nbytes: int, compression: float = 1.0) -> float:
    """The ring all-reduce bound in cycles at 1 byte per cycle per link."""
    return 2 * (n - 1) / n * nbytes / (compression * ETA)


def measure(runs, depth: int) -> list:
    """Run (world, length, rs, ag) all-reduces on the first `world` nodes of a simulated 8-node cluster; one
    dict per run with the cycles (see above) and the counters. Every result is checked bit-exact."""
    import numpy as np

    from . import emulator
    from .nic import configure
    from .sim.ring_cluster import cluster, run_allreduce
    from .sim.test_ring import ring_vectors
    devs = cluster(FABRIC_NODES, latency=LATENCY, vector_words=depth)
    rows = []
    try:
        ring = None
        for world, length, rs, ag in runs:
            if ring != world:
                for rank in range(world):
                    configure(devs[rank], rank=rank, world=world, ack_every=ACK_EVERY)
                ring = world
            xs = ring_vectors(world, length, seed=length + world, special=False)
            # 8 simulated SoCs run at tens of thousands of cycles per second: a generous host timeout.
            results, stats = run_allreduce(devs[:world], xs, rs_codec=rs, ag_codec=ag, configure_ring=False,
                                           slice_frames=SLICE_FRAMES, timeout=900)
            want = emulator.allreduce(xs, rs, ag)[0].view(np.uint32)
            if not all(np.array_equal(r.view(np.uint32), want) for r in results):
                raise AssertionError(f"n={world} L={length} {rs}/{ag}: a node's result differs from the emulator")
            if any(s["pieces"] != 1 for s in stats):
                raise AssertionError(f"n={world} L={length}: does not fit the NIC memory in one operation")
            if any(s["start_skew"] for s in stats):
                raise AssertionError(f"n={world} L={length}: the nodes did not start on the same cycle "
                                     f"(skew {stats[0]['start_skew']}); raise nic.START_MARGIN_CYCLES")
            rows.append({"world": world, "length": length, "rs": rs, "ag": ag,
                         "cycles": max(s["cycles"] for s in stats), "cycles_min": min(s["cycles"] for s in stats),
                         "retransmits": sum(s["retransmits"] for s in stats),
                         "frames_sent": [s["frames_sent"] for s in stats]})
    finally:
        for dev in devs:
            dev.close()
    return rows


def calibration_runs(quick=False):
    """(world, length, rs, ag) of the calibration set: every n = 2…8, two sizes of fp32, one of mxint8."""
    sizes = (1024, 4096) if quick else (2048, 8192)
    runs = []
    for n in range(2, FABRIC_NODES + 1):
        for length in sizes:
            runs.append((n, length, "fp32", "fp32"))
        runs.append((n, sizes[1], "mxint8", "mxint8"))
    return runs


#: The two free parameters as `calibrate` fitted them to this bench's 26 runs (2026-11-30; the bench prints
#: the current fit): pipeline depth d (per-hop latency = LATENCY + d) and the fixed cycles per operation.
FITTED = {"pipeline_depth_cycles": 4.0, "fixed_cycles": -129.0}


def model_params(fitted: bool = False):
    """NicParams of the benchmarked fabric (everything but the two fitted parameters is a setting); with
    `fitted`, those two as last calibrated (FITTED)."""
    from .rtl.nic_format import HEADER_BYTES
    from .scaling_model import NicParams
    # A frame is stored whole three times on a hop: the sender's UDP transmit buffer and the receiver's
    # UDP endpoint (FCS checked before delivery) at the NICs, and the store-and-forward switch between.
    return NicParams(link_latency_cycles=LATENCY, header_bytes=HEADER_BYTES, slice_frames=SLICE_FRAMES,
                     window_frames=WINDOW, frames_per_ack=ACK_EVERY, frame_buffers=2, switch_hops=1,
                     host_bytes_per_cycle=1e9, **(FITTED if fitted else {}))


DEPTH = 131072          # NIC memory words per node of the benchmarked cluster (512 KiB)


def bench_nic(quick=False) -> list:
    from .scaling_model import calibrate
    n = 4
    big = (DEPTH // 4 if quick else DEPTH) - 256          # 511 KiB per rank (127 KiB with --quick)
    small = 8192 if quick else 32512                      # 127 KiB (32 KiB)
    headline = [(n, big, "fp32", "fp32"), (n, big, "mxint8", "mxint8"), (n, big, "bf16", "bf16"),
                (n, small, "fp32", "fp32"), (n, small, "mxint8", "mxint8")]
    cal_runs = calibration_runs(quick)
    rows = measure(headline + cal_runs, DEPTH)
    if "-v" in sys.argv:
        print(json.dumps(rows, indent=1))
    results = []
    for length, (fp32, mx, bf) in ((big, rows[0:3]), (small, (rows[3], rows[4], None))):
        size = 4 * length
        bound = ring_bound_cycles(n, size)
        kib = size / 1024
        results += [
            Result(f"all-reduce fp32 n={n} {kib:.0f} KiB (simulated cluster): ring bound / achieved",
                   bound / fp32["cycles"], "×", 0.95, command=COMMAND),
            Result(f"all-reduce fp32 n={n} {kib:.0f} KiB: cycles", fp32["cycles"], "cycles", bound,
                   higher_is_better=False, command=COMMAND),
            Result(f"all-reduce mxint8 n={n} {kib:.0f} KiB: effective bandwidth / fp32 limit", bound / mx["cycles"],
                   "×", 3.5, command=COMMAND),
        ]
        if bf:
            results.append(Result(f"all-reduce bf16 n={n} {kib:.0f} KiB: effective bandwidth / fp32 limit",
                                  bound / bf["cycles"], "×", None, command=COMMAND))
    measurements = [(row["world"], 4 * row["length"], (row["rs"], row["ag"]), row["cycles"]) for row in rows]
    cal = calibrate(measurements, model_params())
    for world, error in cal.error_by_n().items():
        results.append(Result(f"scaling model vs simulated cluster, n={world}: largest |error|", 100 * error, "%", 3.0,
                              higher_is_better=False, command=COMMAND))
    results.append(Result(f"scaling model fit: per-hop latency {cal.hop_latency_cycles:.0f} cycles, fixed "
                          f"{cal.fixed_cycles:.0f} cycles; RMS error", 100 * cal.rms_error, "%", 3.0,
                          higher_is_better=False, command=COMMAND))
    return results


if __name__ == "__main__":
    for result in bench_nic(quick="--quick" in sys.argv):
        ratio = f"  ({result.ratio:.3f} of goal {result.goal:g})" if result.goal else ""
        print(f"{result.name}: {result.value:.4g} {result.unit}{ratio}")
