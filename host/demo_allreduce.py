"""The all-reduce step of `make demo`: a 4-node simulated cluster (SoCs with NICs, GMII through a switch
model), one all-reduce in FP32 and one in MXINT8, every node's result checked bit for bit against
`tensornic.emulator.allreduce`, the bytes each node put on the wire, and the scaling model's prediction
beside the simulated cycles."""

import numpy as np

__all__ = ["demo_allreduce", "DEMO_NODES", "DEMO_LENGTH"]

DEMO_NODES = 4
DEMO_LENGTH = 8000            # elements per rank (not a multiple of n·k: the NIC pads and unpads)


def _wire_bytes(stats, eth):
    """UDP payload bytes plus each frame's preamble/SFD, Ethernet, IPv4, UDP, FCS and gap."""
    from .scaling_model import PER_FRAME_OVERHEAD
    return stats["bytes_sent"] + PER_FRAME_OVERHEAD * eth


def demo_allreduce(console, nodes: int = DEMO_NODES, length: int = DEMO_LENGTH, vector_words: int = 8192):
    """Run the step, print its table; returns one row per codec: (codec, exact, wire bytes per node, NIC
    cycles, model cycles, retransmissions, relative error vs the float64 sum)."""
    from rich.table import Table

    from . import emulator
    from .bench_nic import model_params
    from .errors import TensornicError
    from .nic import configure, eth_counters
    from .scaling_model import allreduce_time
    from .sim.ring_cluster import cluster, run_allreduce

    console.print(f"\n[bold]all-reduce[/bold] on a simulated {nodes}-node cluster (each node a SoC with the NIC; "
                  "Ethernet frames through a switch model). Building the model the first time takes a few "
                  "minutes; it is cached.")
    rng = np.random.default_rng(2022)
    xs = [rng.standard_normal(length).astype(np.float32) for _ in range(nodes)]
    devs = cluster(nodes, vector_words=vector_words)
    rows = []
    try:
        for rank, dev in enumerate(devs):
            configure(dev, rank=rank, world=nodes)
        for codec in ("fp32", "mxint8"):
            before = [eth_counters(dev)["eth_frames_sent"] for dev in devs]
            results, stats = run_allreduce(devs, xs, rs_codec=codec, ag_codec=codec, configure_ring=False)
            frames = [eth_counters(dev)["eth_frames_sent"] - b for dev, b in zip(devs, before)]
            want = emulator.allreduce(xs, codec, codec)[0]
            exact = all(np.array_equal(r.view(np.uint32), want.view(np.uint32)) for r in results)
            if not exact:
                raise TensornicError(f"{codec} all-reduce: a node's result differs from the emulator's")
            wire = max(_wire_bytes(s, f) for s, f in zip(stats, frames))
            # Every node starts on the same cycle (the cluster shares one clock): the last done is the time.
            cycles = max(s["cycles"] for s in stats)
            model = allreduce_time(nodes, 4 * length, codec, codec, model_params(fitted=True))
            exact_sum = np.sum(np.asarray(xs, np.float64), axis=0)
            error = np.linalg.norm(want - exact_sum) / np.linalg.norm(exact_sum)
            rows.append((codec, exact, wire, cycles, model.cycles, sum(s["retransmits"] for s in stats), error))
    finally:
        for dev in devs:
            dev.close()

    table = Table(title=f"all-reduce of {length:,} FP32 values per node, {nodes} nodes, 1 GbE")
    for column in ("codec", "every node = emulator", "wire bytes per node", "NIC cycles", "model cycles",
                   "retransmissions", "rel. error vs float64 sum"):
        table.add_column(column, justify="right")
    for codec, exact, wire, cycles, model, retrans, error in rows:
        table.add_row(codec, "[green]bit-exact[/green]" if exact else "[red]differs[/red]", f"{wire:,}",
                      f"{cycles:,}", f"{model:,.0f} ({(model - cycles) / cycles:+.1%})", str(retrans),
                      f"{error:.2e}")
    console.print(table)
    fp32_wire, mx_wire = rows[0][2], rows[1][2]
    console.print(f"MXINT8 put {fp32_wire / mx_wire:.2f}× fewer bytes on each link than FP32 "
                  f"({fp32_wire - mx_wire:,} bytes saved per node) and finished "
                  f"{rows[0][3] / rows[1][3]:.2f}× sooner.")
    return rows
