"""The all-reduce scaling model (tensornic.scaling_model) and the numerics study (tensornic.bench_numerics)."""

import argparse
import dataclasses
import io

import numpy as np
import pytest
from rich.console import Console

from tensornic import bench_numerics as bn
from tensornic import scaling_model as sm
from tensornic.scaling_model import NicParams, ScalingModelError, allreduce_time

MiB = 1 << 20


def ideal(**overrides):
    """A NIC whose only limit is the link: no acks, lanes and host link to spare."""
    fields = dict(frames_per_ack=0, lanes=8, host_bytes_per_cycle=64.0)
    fields.update(overrides)
    return NicParams(**fields)


# --- formulas -------------------------------------------------------------------------------------------------

def test_framing_efficiency_and_compression_match_the_background():
    assert sm.framing_efficiency(1472) == pytest.approx(0.957, abs=0.001)     # ≈ 95 % (nic.md)
    assert sm.framing_efficiency(256) == pytest.approx(0.795, abs=0.001)      # ≈ 80 %
    assert sm.frame_wire_bytes(0, 0) == 8 + 64 + 12                           # padded to the minimum frame
    assert sm.compression_ratio("fp32") == 1 and sm.compression_ratio("bf16") == 2
    assert sm.compression_ratio("mxint8", 32) == pytest.approx(3.88, abs=0.005)
    assert sm.compression_ratio("mxint8", 16) == pytest.approx(3.76, abs=0.005)
    assert sm.compression_ratio("mxint8-trunc", 16) == sm.compression_ratio("mxint8", 16)


@pytest.mark.parametrize("codec", ["fp32", "bf16", "mxint8"])
@pytest.mark.parametrize("n", [2, 3, 8])
def test_bandwidth_path_equals_the_ring_bound_for_whole_frames(codec, n):
    p = ideal()
    elements, data = p.data_capacity(codec)
    size = 4 * elements * n * 32                      # every chunk: 32 full frames, no padding
    est = allreduce_time(n, size, codec, codec, p)
    eta = sm.framing_efficiency(data, p.header_bytes)
    beta = sm.compression_ratio(codec, p.mx_block)
    bound = sm.ring_lower_bound(n, size, p.link_bytes_per_s, beta, eta)
    assert est.bandwidth_cycles - p.hop_latency_cycles == pytest.approx(bound * p.clock_hz, rel=1e-12)
    assert est.seconds >= bound
    assert est.bottleneck == "link"
    assert est.frames_per_node == 2 * (n - 1) * 32


def test_step_forwarding_is_the_textbook_formula():
    p = ideal(forward="chunk")
    elements, data = p.data_capacity("fp32")
    n, size = 6, 4 * elements * 6 * 32
    est = allreduce_time(n, size, "fp32", params=p)
    alpha_s = p.hop_latency_cycles / p.clock_hz
    bound = sm.ring_lower_bound(n, size, p.link_bytes_per_s, 1.0, sm.framing_efficiency(data, p.header_bytes),
                                alpha_s)
    assert est.seconds == pytest.approx(bound + p.fixed_cycles / p.clock_hz, rel=1e-12)


@pytest.mark.parametrize("buffers,switches", [(0, 0), (1, 0), (2, 0), (2, 1), (0, 2)])
def test_small_messages_are_latency_bound(buffers, switches):
    p = ideal(link_latency_cycles=1000.0, frame_buffers=buffers, switch_hops=switches)
    est = allreduce_time(8, 8 * 32 * 4, "fp32", params=p)      # one frame per step
    assert est.latency_cycles > est.bandwidth_cycles and est.bottleneck == "hop latency"
    frame, alpha = sm.frame_wire_bytes(32 * 4, p.header_bytes), p.hop_latency_cycles
    trip = frame + buffers * (p.header_bytes + 32 * 4)         # each whole-datagram buffering costs its bytes
    # a store-and-forward switch resends it whole; the link latency is paid once per switch
    trip += switches * frame + max(0, switches - 1) * p.link_latency_cycles
    assert est.ring_cycles == pytest.approx(14 * (trip + alpha))   # 2(n−1) hops, one after the other


def test_slices_pay_latency_once_per_slice_step():
    # F frames per slice: a step of a slice waits for the first frame of the step before it, so small
    # slices on a long link are latency-bound while one big slice streams
    long_link = dict(link_latency_cycles=20_000.0, frame_buffers=0)
    n, frames = 4, 16
    size = 4 * NicParams().data_capacity("fp32")[0] * n * frames
    whole = allreduce_time(n, size, "fp32", params=ideal(slice_frames=None, **long_link))
    small = allreduce_time(n, size, "fp32", params=ideal(slice_frames=2, **long_link))
    frame = sm.frame_wire_bytes(NicParams().data_capacity("fp32")[1], 24)
    alpha = 20_000.0 + 64
    assert small.cycles > whole.cycles
    assert small.ring_cycles == pytest.approx(frames / 2 * (5 * (frame + alpha) + 2 * frame) + alpha)
    assert whole.ring_cycles == pytest.approx(5 * max(frames * frame, frame + alpha) + frames * frame + alpha)
    assert small.bandwidth_cycles == whole.bandwidth_cycles


@pytest.mark.parametrize("params", [NicParams(), NicParams(frames_per_ack=3, slice_frames=5),
                                    NicParams(slice_frames=1, window_frames=4, frames_per_ack=2),
                                    NicParams.for_link("40GbE"), NicParams(frames_per_ack=0)])
def test_skipping_periodic_slices_is_exact(params):
    cases = ((2, MiB, "fp32", "fp32"), (5, MiB // 2, "mxint8", "mxint8"), (3, 3 * MiB // 4, "bf16", "mxint8"))
    for n, size, rs, ag in cases:
        schedule = sm._Schedule(n, size, rs, ag, params)
        for depth in (0.0, 64.0, 3000.0):
            assert schedule.cycles(depth) == pytest.approx(schedule.cycles(depth, skip=False), rel=1e-12)
        grid = np.array([0.0, 64.0, 3000.0])
        np.testing.assert_allclose(schedule.cycles(grid), [schedule.cycles(d) for d in grid], rtol=1e-12)


def test_a_small_window_on_a_long_link_caps_the_rate():
    far = dict(link_latency_cycles=50_000.0, slice_frames=None)          # one slice per chunk: it streams
    open_window = allreduce_time(4, 4 * MiB, "fp32", params=NicParams(window_frames=None, **far))
    small = allreduce_time(4, 4 * MiB, "fp32", params=NicParams(window_frames=4, **far))
    assert open_window.cycles < 1.05 * open_window.bandwidth_cycles + 4 * 50_000
    assert small.cycles > 10 * open_window.cycles      # 4 frames per round trip of ≈ 100 000 cycles


def test_frames_hold_the_same_elements_in_both_phases():
    p = NicParams()                                            # H = 24: 1448 bytes of room
    assert p.frame_elements("fp32", "fp32") == 362
    assert p.frame_elements("bf16", "bf16") == 724
    assert p.frame_elements("mxint8", "mxint8") == 43 * 32
    assert p.frame_elements("bf16", "mxint8") == 704           # BF16 is wider; whole MXINT8 blocks
    assert p.frame_elements("fp32", "mxint8") == 352
    mixed = allreduce_time(4, 4 * MiB, "fp32", "mxint8", params=p)
    assert mixed.frames_per_node == 6 * -(-(MiB // 4) // 352)


def test_monotone_in_size_nodes_and_link_speed():
    p = NicParams()
    sizes = [4 * 1024, 64 * 1024, MiB, 16 * MiB]
    for codec in ("fp32", "bf16", "mxint8"):
        times = [allreduce_time(4, s, codec, params=p).cycles for s in sizes]
        assert times == sorted(times) and len(set(times)) == len(times)
        # more nodes, more time; between neighbours the time can shrink a little when the chunk's last
        # partial frame disappears (its overhead is paid whatever its size), never by 2 %; F-frame slices
        # (full, of equal frames: nic_format.frame_layout) cost a little framing and are never more than
        # a hair faster than one slice of the largest frames (their last frames are smaller)
        whole = dataclasses.replace(p, slice_frames=None)
        by_n = [allreduce_time(n, MiB, codec, params=whole).cycles for n in range(2, 33)]
        assert all(b >= 0.98 * a for a, b in zip(by_n, by_n[1:])) and by_n[-1] > 1.8 * by_n[0]
        sliced = [allreduce_time(n, MiB, codec, params=p).cycles for n in range(2, 33)]
        assert all(s >= 0.999 * w for s, w in zip(sliced, by_n)) and sliced[-1] > 1.8 * sliced[0]
        busbw = [allreduce_time(4, s, codec, params=p).bus_bandwidth for s in sizes]
        assert busbw == sorted(busbw)
    seconds = [allreduce_time(8, 16 * MiB, "fp32", params=NicParams.for_link(link)).seconds for link in sm.LINKS]
    assert seconds == sorted(seconds, reverse=True)
    fp32, bf16, mx = (allreduce_time(8, 16 * MiB, c, params=p).seconds for c in ("fp32", "bf16", "mxint8"))
    assert fp32 > bf16 > mx


def test_large_tensors_approach_the_link_limit():
    p = NicParams()                                          # the 1 GbE design, acks included
    size = 256 * MiB
    fp32 = allreduce_time(4, size, "fp32", params=p)
    limit = p.link_bytes_per_s * sm.framing_efficiency(1472)   # B·η of the bench
    assert 0.95 <= fp32.bus_bandwidth / limit <= 1.0
    mx = allreduce_time(4, size, "mxint8", params=p)
    assert mx.effective_bandwidth / limit >= 3.5               # the MXINT8 goal, as modeled
    assert mx.bottleneck == "link"
    for est in (fp32, mx):                                     # the port is busy all the time
        assert est.wire_bandwidth == pytest.approx(p.link_bytes_per_s, rel=0.01)
        assert est.algorithm_bandwidth == pytest.approx(est.bus_bandwidth * 4 / 6)


def test_adder_and_host_link_bounds():
    size, n = 8 * MiB, 4
    slow_adders = allreduce_time(n, size, "mxint8", params=ideal(link_bytes_per_cycle=8.0, lanes=1))
    assert slow_adders.bottleneck == "adders"
    elements = size // 4
    assert slow_adders.bandwidth_cycles == pytest.approx(2 * (n - 1) / n * elements, rel=1e-3)
    slow_host = allreduce_time(n, size, "mxint8", params=ideal(host_bytes_per_cycle=1.0))
    assert slow_host.bottleneck == "host link"
    assert slow_host.bandwidth_cycles == pytest.approx(2 * (n - 1) / n * size, rel=1e-3)
    duplex = allreduce_time(n, size, "mxint8", params=ideal(host_bytes_per_cycle=1.0, host_duplex=True))
    assert duplex.bandwidth_cycles == pytest.approx(slow_host.bandwidth_cycles / 2, rel=1e-3)


def test_acks_cost_link_time_only_when_they_share_the_port():
    base = allreduce_time(4, 4 * MiB, "fp32", params=ideal())
    shared = allreduce_time(4, 4 * MiB, "fp32", params=ideal(frames_per_ack=1))
    reverse = allreduce_time(4, 4 * MiB, "fp32", params=ideal(frames_per_ack=1, acks_share_link=False))
    assert shared.cycles > 1.04 * reverse.cycles                # 84 of ~1540 byte times per frame
    assert 0 < reverse.cycles - base.cycles < 1000              # only the last ACK's trip: DONE waits for it
    assert shared.wire_bytes_per_node - base.wire_bytes_per_node == pytest.approx(
        shared.frames_per_node * sm.frame_wire_bytes(0, 24))


def test_one_node_costs_only_the_fixed_overhead():
    p = NicParams()
    assert allreduce_time(1, 4096, params=p).cycles == p.fixed_cycles


@pytest.mark.parametrize("bad", [
    lambda: allreduce_time(0, 4096),
    lambda: allreduce_time(4, 4095),
    lambda: allreduce_time(4, 4096, "int4"),
    lambda: NicParams(lanes=0),
    lambda: NicParams(udp_payload_bytes=20, header_bytes=16),
    lambda: NicParams(forward="packet"),
    lambda: NicParams(frame_buffers=-1),
    lambda: NicParams(slice_frames=0),
    lambda: NicParams.for_link("25GbE"),
    lambda: sm.calibrate([(4, 4096, "fp32", 1e4)]),
    lambda: sm.calibrate([(4, 4096, "fp32", 1e4), (4, 8192, "fp32", 2e4)]),
    lambda: sm.calibrate([(4, 4096, "fp32", -1), (2, 8192, "fp32", 2e4)]),
    lambda: sm.SoftwareRing(1e9, comm_cores=28),
])
def test_bad_input_raises_a_named_error(bad):
    with pytest.raises(ScalingModelError):
        bad()


# --- calibration -------------------------------------------------------------------------------------------------

def synthetic(truth, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for n in range(2, 9):
        for size in (2 * 1024, 8 * 1024, 64 * 1024):          # the simulation holds ≤ 8 KiB a node
            for codec in ("fp32", ("bf16", "mxint8"), "mxint8"):
                rs, ag = (codec, codec) if isinstance(codec, str) else codec
                cycles = allreduce_time(n, size, rs, ag, truth).cycles * (1 + noise * rng.standard_normal())
                out.append((n, size, codec, cycles))
    return out


@pytest.mark.parametrize("forward", ["frame", "chunk"])
def test_calibration_recovers_known_parameters(forward):
    truth = NicParams(link_latency_cycles=100.0, pipeline_depth_cycles=237.0, fixed_cycles=1800.0, forward=forward)
    start = dataclasses.replace(truth, pipeline_depth_cycles=0.0, fixed_cycles=0.0)
    cal = sm.calibrate(synthetic(truth), start)
    assert cal.hop_latency_cycles == pytest.approx(337.0, rel=1e-5)
    assert cal.fixed_cycles == pytest.approx(1800.0, rel=1e-4)
    assert cal.params.pipeline_depth_cycles == pytest.approx(237.0, rel=1e-4)
    assert cal.max_abs_error < 1e-6
    assert len(cal.points) == 7 * 3 * 3


def test_calibration_with_noisy_measurements_stays_within_the_goal():
    truth = NicParams(pipeline_depth_cycles=300.0, fixed_cycles=2000.0)
    cal = sm.calibrate([sm.Measurement(*m) for m in synthetic(truth, noise=0.005, seed=3)],
                       dataclasses.replace(truth, pipeline_depth_cycles=0.0, fixed_cycles=0.0))
    assert cal.hop_latency_cycles == pytest.approx(truth.hop_latency_cycles, rel=0.2)
    assert cal.max_abs_error <= 0.03 and cal.rms_error <= 0.01
    for m, predicted, error in cal.points:
        assert error == pytest.approx((predicted - m.cycles) / m.cycles)
    by_n = cal.error_by_n()
    assert list(by_n) == list(range(2, 9)) and max(by_n.values()) == pytest.approx(cal.max_abs_error)


# --- training iterations and the paper ---------------------------------------------------------------------------

def test_iteration_model_overlap():
    w = sm.Workload(layers=4, compute_s=0.3)
    assert sm.iteration_time(w, 0.0).seconds == pytest.approx(0.3)
    hidden = sm.iteration_time(w, 0.01)                  # each all-reduce fits under the next layer's bwd
    assert hidden.exposed_s == pytest.approx(0.01) and hidden.seconds == pytest.approx(0.31)
    slow = sm.iteration_time(w, 0.2)                     # communication bound: fwd + first grad + 4 × 0.2
    assert slow.seconds == pytest.approx(0.1 + 0.05 + 0.8)
    assert sm.iteration_time(w, 0.0, compute_scale=1.5).seconds == pytest.approx(0.45)


def test_paper_speedups_have_the_papers_shape():
    nic, sw = sm.paper_setup("40GbE")
    w = sm.PAPER_WORKLOAD
    s6, s32 = sm.speedup(6, w, nic, sw), sm.speedup(32, w, nic, sw)
    assert s6 == pytest.approx(1.6, rel=0.10)
    assert s32 == pytest.approx(2.5, rel=0.10)
    big = dataclasses.replace(w, batch=4 * w.batch)
    assert sm.speedup(32, big, nic, sw) == pytest.approx(1.4, rel=0.10)
    curve = [sm.speedup(n, w, nic, sw) for n in range(2, 65)]
    assert all(b >= a for a, b in zip(curve, curve[1:]))
    assert sm.nic_iteration(6, w, nic).hidden_fraction >= 0.9                 # "≈ 95 % hidden"
    assert allreduce_time(6, w.layer_bytes, "mxint8", params=nic).bottleneck == "host link"   # PCIe-bound


def test_cli_prints_a_table_and_writes_a_plot(tmp_path):
    parser = argparse.ArgumentParser()
    sm.add_arguments(parser)
    out = io.StringIO()
    console = Console(file=out, width=200)
    png = tmp_path / "model.png"
    args = parser.parse_args(["--nodes", "2,6,32", "--links", "1GbE,40GbE", "--plot", str(png)])
    assert sm.run(args, console) == 0
    text = out.getvalue()
    assert "40GbE" in text and "speed-up" in text and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    args = parser.parse_args(["--nodes", "4", "--links", "10GbE", "--size", "1M", "--rs-codec", "bf16",
                              "--ag-codec", "mxint8", "--compute-ms", "50", "--no-plot"])
    assert sm.run(args, console) == 0
    with pytest.raises(ScalingModelError):
        sm.run(parser.parse_args(["--nodes", "1", "--no-plot"]), console)
    with pytest.raises(ScalingModelError):
        sm.run(parser.parse_args(["--size", "12Q", "--no-plot"]), console)


# --- numerics ----------------------------------------------------------------------------------------------------

def test_errors_are_ordered_and_truncation_is_biased():
    xs = bn.make_ranks(8, 4096, "Gaussian", seed=1)
    err = {c: bn.error_and_bias(xs, c, c) for c in ("fp32", "bf16", "mxint8", "mxint8-trunc")}
    assert err["fp32"][0] < err["bf16"][0] < err["mxint8"][0] < err["mxint8-trunc"][0]
    assert err["fp32"][0] < 1e-6
    assert err["mxint8-trunc"][1] < -0.01                      # truncation (floor) always pulls down
    assert abs(err["mxint8"][1]) < 0.001 and abs(err["bf16"][1]) < 0.001


def test_numerics_goal_at_32_nodes_and_the_bench_rows():
    points = bn.numerics_study(nodes=(32,), pairs=(("mxint8", "mxint8"), ("bf16", "bf16"),
                                                   ("mxint8-trunc", "mxint8-trunc")), length=4096)
    gaussian = {(p.rs, p.ag): p for p in points if p.distribution == "Gaussian"}
    assert gaussian[("mxint8", "mxint8")].error <= 0.03
    assert gaussian[("bf16", "bf16")].error <= 0.01
    assert gaussian[("mxint8-trunc", "mxint8-trunc")].error > 3 * gaussian[("mxint8", "mxint8")].error
    results = bn.results_from(points)
    names = [r.name for r in results]
    assert len(names) == len(set(names)) == 3 * 3 * 2
    trunc = [r for r in results if "trunc" in r.name]
    assert trunc and all(r.goal is None for r in trunc)
    assert all(r.goal == pytest.approx(0.1) and r.unit == "%" for r in results
               if "|bias|" in r.name and "trunc" not in r.name)
    assert {r.goal for r in results if "relative error" in r.name and "bf16/bf16" in r.name} == {1.0}
    gaussian_mx = next(r for r in results if r.name.startswith("all-reduce mxint8/mxint8") and "Gaussian" in r.name
                       and "relative error" in r.name)
    assert gaussian_mx.value == pytest.approx(100 * gaussian[("mxint8", "mxint8")].error)
    assert gaussian_mx.goal == 3.0 and gaussian_mx.ratio >= 1
    assert "| mxint8 / mxint8 |" in bn.study_table(points)


def test_make_ranks_data():
    xs = bn.make_ranks(4, 10_000, "sparse 90 %", seed=2)
    zero = [x == 0 for x in xs]
    assert all((z == zero[0]).all() for z in zero)             # the same positions are zero on every rank
    assert 0.85 < zero[0].mean() < 0.95
    with pytest.raises(bn.NumericsError):
        bn.make_ranks(4, 16, "uniform")


@pytest.mark.slow
def test_bench_numerics_quick_runs():
    results = bn.bench_numerics(quick=True)
    assert all(np.isfinite(r.value) for r in results)
    assert any("n=6" in r.name for r in results)
