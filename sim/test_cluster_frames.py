"""The simulated cluster's Ethernet, in CI: 2 SoCs whose NICs talk through their UDP endpoints and a GMII
switch model. Every frame the nodes put on the wire is captured to pcap and checked by scapy (addresses,
IPv4 header checksum, UDP length and zero checksum, FCS by zlib's CRC-32, the tensornic header) and by
tshark when it is installed; the all-reduce is bit-exact. With corruption injected, receivers count FCS
errors, the ring retransmits, and the result is still bit-exact."""

import shutil
import subprocess
import zlib

import numpy as np
import pytest

from tensornic import emulator
from tensornic.nic import configure, eth_counters
from tensornic.rtl import nic_format as nf
from tensornic.sim.test_ring import ring_vectors

scapy = pytest.importorskip("scapy.all")

VECTOR_WORDS = 256
FCS_RESIDUE = 0x2144DF1C          # CRC-32 over a frame with its FCS


def _cluster(**faults):
    from tensornic.sim.ring_cluster import cluster
    return cluster(2, vector_words=VECTOR_WORDS, **faults)


def _exact(xs, results, rs, ag):
    want = emulator.allreduce(xs, rs, ag)[0].view(np.uint32)
    for rank, got in enumerate(results):
        assert np.array_equal(got.view(np.uint32), want), f"rank {rank} differs from the emulator"


def test_cluster_frames_in_pcap(tmp_path):
    from tensornic.sim.ring_cluster import run_allreduce
    prefix = tmp_path / "node"
    macs = ["02:00:5e:10:00:00", "02:00:5e:10:00:01"]      # the switch model routes on the last byte
    ips = ["192.168.7.10", "192.168.7.11"]
    devs = _cluster(pcap=prefix)
    try:
        for rank, dev in enumerate(devs):
            configure(dev, rank=rank, world=2, macs=macs, ips=ips, udp_port=5123)
        runs = []
        for length, rs, ag in ((300, "fp32", "fp32"), (190, "mxint8", "bf16")):
            xs = ring_vectors(2, length, seed=length)
            results, stats = run_allreduce(devs, xs, rs_codec=rs, ag_codec=ag, configure_ring=False)
            _exact(xs, results, rs, ag)
            runs.append(stats)
        counters = [eth_counters(dev) for dev in devs]
    finally:
        for dev in devs:
            dev.close()

    for rank in range(2):
        packets = scapy.rdpcap(str(prefix) + f"{rank}.pcap")
        assert len(packets) == counters[rank]["eth_frames_sent"] > 0
        data_frames = 0
        for pkt in packets:
            raw = bytes(pkt)
            assert zlib.crc32(raw) == FCS_RESIDUE, "bad FCS"
            assert len(raw) >= 64
            eth, ip, udp = pkt[scapy.Ether], pkt[scapy.IP], pkt[scapy.UDP]
            assert eth.src == macs[rank] and eth.dst == macs[1 - rank] and eth.type == 0x0800
            assert ip.src == ips[rank] and ip.dst == ips[1 - rank] and ip.proto == 17 and ip.ttl == 64
            fresh = ip.copy()
            fresh.chksum = None
            assert scapy.IP(bytes(fresh)).chksum == ip.chksum, "IPv4 header checksum"
            assert udp.sport == 5123 and udp.dport == 5123 and udp.chksum == 0
            payload = bytes(udp.payload)[:udp.len - 8]
            header = nf.unpack_header(payload[:nf.HEADER_BYTES])
            assert header["magic"] == nf.MAGIC
            if header["kind"] == nf.Kind.DATA:
                data_frames += 1
                assert header["length"] == len(payload) - nf.HEADER_BYTES
        assert data_frames == sum(stats[rank]["frames_sent"] for stats in runs)
        assert counters[rank]["eth_fcs_errors"] == 0 and counters[rank]["eth_not_for_us"] == 0

    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (Debian package 'tshark'); scapy checked every frame")
    for rank in range(2):
        out = subprocess.run(
            [tshark, "-r", str(prefix) + f"{rank}.pcap", "-o", "eth.check_fcs:TRUE", "-o", "ip.check_checksum:TRUE",
             "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=,", "-e", "eth.fcs.status",
             "-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "udp.srcport"],
            capture_output=True, text=True, timeout=120, check=True).stdout
        rows = [line.split(",") for line in out.splitlines() if line.strip()]
        # Wireshark's statuses: 1 good, 3 not present (the zero UDP checksum).
        assert len(rows) == counters[rank]["eth_frames_sent"]
        assert all(row == ["1", "1", "3", "5123"] for row in rows), rows[:3]


def test_cluster_corruption_recovered():
    from tensornic.sim.ring_cluster import run_allreduce
    devs = _cluster(corrupt=0.08, drop=0.02, seed=5)
    try:
        for rank, dev in enumerate(devs):
            configure(dev, rank=rank, world=2, rto_cycles=20_000, timeout_cycles=2_000_000)
        xs = ring_vectors(2, 500, seed=9)
        results, stats = run_allreduce(devs, xs, rs_codec="mxint8", ag_codec="mxint8", configure_ring=False)
        _exact(xs, results, "mxint8", "mxint8")
        counters = [eth_counters(dev) for dev in devs]
    finally:
        for dev in devs:
            dev.close()
    assert sum(c["eth_fcs_errors"] for c in counters) > 0, counters
    assert sum(s["retransmits"] for s in stats) > 0


def test_demo_allreduce_step():
    """`make demo`'s all-reduce step (here on the 2-node cluster built above, with a short vector)."""
    from rich.console import Console
    from tensornic.demo_allreduce import demo_allreduce
    console = Console(record=True, width=140)
    rows = demo_allreduce(console, nodes=2, length=300, vector_words=VECTOR_WORDS)
    (fp32, exact32, wire32, cycles32, _, _, err32), (mx, exact_mx, wire_mx, cycles_mx, _, _, err_mx) = rows
    assert (fp32, mx) == ("fp32", "mxint8") and exact32 and exact_mx
    assert wire_mx < wire32 and cycles32 > 0 and cycles_mx > 0
    assert err32 < 1e-6 < err_mx < 0.05
    assert "fewer bytes on each link" in console.export_text()


def test_cluster_host_backpressure():
    """Random idle gaps and backpressure on every node's host byte stream (half the cycles), with a
    vector three times the NIC memory (the host streams it in pieces): bit-exact, every piece started on
    one cycle on both nodes."""
    from tensornic.sim.ring_cluster import run_allreduce
    devs = _cluster(host_stall=0.5, seed=3)
    try:
        for length, rs, ag in ((700, "fp32", "fp32"), (333, "bf16", "mxint8")):
            xs = ring_vectors(2, length, seed=length)
            results, stats = run_allreduce(devs, xs, rs_codec=rs, ag_codec=ag)
            _exact(xs, results, rs, ag)
            assert all(s["start_skew"] == 0 for s in stats), stats
        assert stats[0]["pieces"] >= 1
        assert run_allreduce(devs, ring_vectors(2, 700, seed=1))[1][0]["pieces"] == 3
    finally:
        for dev in devs:
            dev.close()
