"""Simulation: Verilator runner, cocotb test benches, and the simulated device behind a pseudo-terminal."""


def cluster(n, **options):
    """n simulated SoCs with NICs wired in a ring (tensornic.sim.ring_cluster.cluster): a list of Devices."""
    from .ring_cluster import cluster as build       # imported on use: the Verilator tooling is heavy
    return build(n, **options)


def run_allreduce(devs, xs, rs_codec="fp32", ag_codec="fp32", **options):
    """Every node's all-reduce result and statistics on a simulated cluster (ring_cluster.run_allreduce)."""
    from .ring_cluster import run_allreduce as run
    return run(devs, xs, rs_codec=rs_codec, ag_codec=ag_codec, **options)
