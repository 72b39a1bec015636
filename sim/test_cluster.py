"""The cycle-accurate cluster (sim/ring_cluster.py): n SoCs with NICs behind their own host transports, through
link models; `run_allreduce` bit-exact vs tensornic.emulator.allreduce on every node, under loss, with a
vector larger than the NIC's memory (pieces), and a dead link reported as NicTimeout on every node."""

import numpy as np
import pytest

from tensornic import emulator
from tensornic.sim.test_ring import ring_vectors

#: Building the cluster model takes minutes: these run with the slow tests.
pytestmark = pytest.mark.slow


def _exact(xs, results, rs, ag):
    want = emulator.allreduce(xs, rs, ag)[0].view(np.uint32)
    for rank, got in enumerate(results):
        assert np.array_equal(got.view(np.uint32), want), f"rank {rank} differs"


@pytest.fixture(scope="module")
def cluster3():
    from tensornic.sim.ring_cluster import cluster
    devs = cluster(3, vector_words=1024)
    yield devs
    for dev in devs:
        dev.close()


@pytest.mark.parametrize("rs,ag", [("fp32", "fp32"), ("bf16", "mxint8"), ("mxint8", "bf16")])
def test_cluster_allreduce(cluster3, rs, ag):
    from tensornic.sim.ring_cluster import run_allreduce
    xs = ring_vectors(3, 700, seed=3)
    results, stats = run_allreduce(cluster3, xs, rs_codec=rs, ag_codec=ag)
    _exact(xs, results, rs, ag)
    assert all(s["cycles"] > 0 and s["frames_sent"] > 0 for s in stats)


def test_cluster_pieces(cluster3):
    """A vector 3× the NIC's memory: done in pieces, still bit-exact."""
    from tensornic.sim.ring_cluster import run_allreduce
    xs = ring_vectors(3, 3000, seed=4)
    results, stats = run_allreduce(cluster3, xs, rs_codec="fp32", ag_codec="mxint8")
    _exact(xs, results, "fp32", "mxint8")
    assert stats[0]["pieces"] > 1


def test_cluster_device_allreduce(cluster3):
    """The per-device API, ranks driven one after another from threads (a collective)."""
    import threading
    from tensornic import nic
    xs = ring_vectors(3, 500, seed=5)
    out = [None] * 3
    errors = []

    def rank(i):
        try:
            nic.configure(cluster3[i], rank=i, world=3)
            out[i] = nic.allreduce(cluster3[i], xs[i], "bf16", "bf16")
        except Exception as exc:          # reported below
            errors.append(exc)

    threads = [threading.Thread(target=rank, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _exact(xs, out, "bf16", "bf16")


def test_cluster_loss_and_dead_link():
    from tensornic.nic import NicTimeout, configure
    from tensornic.sim.ring_cluster import cluster, run_allreduce
    devs = cluster(3, vector_words=1024, drop=0.05, corrupt=0.01, seed=11)
    try:
        for i, dev in enumerate(devs):
            configure(dev, rank=i, world=3, rto_cycles=20_000, timeout_cycles=2_000_000)
        xs = ring_vectors(3, 900, seed=6)
        results, stats = run_allreduce(devs, xs, rs_codec="fp32", ag_codec="fp32")
        _exact(xs, results, "fp32", "fp32")
        assert sum(s["retransmits"] for s in stats) > 0
    finally:
        for dev in devs:
            dev.close()
    devs = cluster(3, vector_words=1024, dead_links=[1])
    try:
        for i, dev in enumerate(devs):
            configure(dev, rank=i, world=3, rto_cycles=5_000, timeout_cycles=100_000)
        with pytest.raises(NicTimeout):
            run_allreduce(devs, ring_vectors(3, 300, seed=7), configure_ring=False)
        import time
        from tensornic.rtl import nic_format as nf
        for dev in devs:                  # every node ends with the error, none hangs
            deadline = time.monotonic() + 30
            while dev.read_reg("nic.status") == nf.Status.BUSY and time.monotonic() < deadline:
                time.sleep(0.05)
            assert dev.read_reg("nic.status") == nf.Status.ERROR
            assert dev.read_reg("nic.error") == nf.ErrorCode.TIMEOUT
    finally:
        for dev in devs:
            dev.close()
