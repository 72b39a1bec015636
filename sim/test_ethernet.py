"""UdpEndpoint test bench: cocotb + Verilator, against cocotbext-eth's GMII models and tensornic.netframes.

- Transmit: datagrams of edge and random sizes go in on tx_length/tx, with random idle gaps (and length
  mismatches that must be dropped and counted), then back to back; `cocotbext.eth.GmiiSink` decodes the
  wire, and every frame must equal `netframes.gmii_bytes(netframes.build_frame(...))` byte for byte, with
  a gap of at least 12 idle cycles, exactly 12 when the next datagram was already waiting.
- Receive: `cocotbext.eth.GmiiSource` sends good frames (with and without UDP checksums, some built by
  scapy) and corrupted ones (FCS, IPv4 checksum, UDP checksum, wrong MAC/IP/port/EtherType, RX_ER, runt,
  too long), one by one with random idle gaps and then back to back at line rate (12- and 1-cycle gaps),
  while the rx stream is drained under random backpressure. Payloads and counters must be those that
  `netframes.parse_frame` predicts; a stalled consumer makes the buffer overflow, counted.
- Loopback: the endpoint's wire is fed back to its own input; random datagrams with gaps on tx and
  backpressure on rx arrive intact, and the captured frames are written to a pcap checked by scapy (and by
  tshark when it is installed).
Every test ends with the rx stream empty, tx idle and the models quiet.
"""

import json
import logging
import random
import shutil
import subprocess
import zlib
from pathlib import Path

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from tensornic import netframes as nf
from tensornic.rtl.udp import COUNTER_NAMES, MAX_PAYLOAD_LIMIT, UdpEndpoint, default_buffer_bytes
from tensornic.sim import verilator

CLOCK_NS = 8                      # 125 MHz: 1 Gb/s GMII
TOP = "udp_endpoint"
TEST_MODULE = "tensornic.sim.test_ethernet"
BUILD_PARAMS = {"max_payload": 1472}

LOCAL = dict(mac=0x02005E100002, ip=0x0A010002, port=47001)
PEER = dict(mac=0x02005E100001, ip=0x0A010001, port=47000)


# --- pytest side -----------------------------------------------------------------------------------------

def _run(testcase, build=BUILD_PARAMS, **knobs):
    knobs.setdefault("seed", zlib.crc32(json.dumps([testcase, build, knobs], sort_keys=True).encode()))
    verilator.run_cocotb(lambda: UdpEndpoint(**build), name=TOP, test_module=TEST_MODULE, params=build,
                         knobs=knobs, testcase=testcase, seed=knobs["seed"])


@pytest.mark.parametrize("gaps", [False, True])
def test_transmit(gaps):
    _run("transmit", gaps=gaps, count=24)


@pytest.mark.parametrize("backpressure", [False, True])
def test_receive(backpressure):
    _run("receive", backpressure=backpressure, count=24)


def test_loopback():
    _run("loopback", count=30)


@pytest.mark.slow
@pytest.mark.parametrize("testcase", ["transmit", "receive", "loopback"])
def test_jumbo(testcase):
    _run(testcase, build={"max_payload": 9000}, gaps=True, backpressure=True, count=40)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_loopback_long(seed):
    _run("loopback", count=300, seed=seed)


# --- cocotb side -----------------------------------------------------------------------------------------

class TB:
    """Owns the DUT, the clock, the GMII models (or a loopback wire) and the rx consumer."""

    def __init__(self, dut, *, loopback=False):
        self.dut = dut
        self.params = verilator.cocotb_params()
        self.max_payload = self.params["max_payload"]
        self.log = logging.getLogger("cocotb.tb")
        self.log.setLevel(logging.INFO)
        self.rng = random.Random(self.params["seed"])
        for name in ("gmii_tx__data", "gmii_rx__data"):
            logging.getLogger(f"cocotb.{getattr(dut, name)._path}").setLevel(logging.WARNING)

        dut.rst.value = 1
        dut.config__local_mac.value = LOCAL["mac"]
        dut.config__local_ip.value = LOCAL["ip"]
        dut.config__local_port.value = LOCAL["port"]
        self.set_destination(PEER)
        dut.tx_length__valid.value = 0
        dut.tx_length__payload.value = 0
        dut.tx__valid.value = 0
        dut.tx__payload.value = 0
        dut.rx__ready.value = 0
        Clock(dut.clk, CLOCK_NS, unit="ns").start()

        from cocotbext.eth import GmiiSink, GmiiSource
        self.sink = GmiiSink(dut.gmii_tx__data, dut.gmii_tx__er, dut.gmii_tx__en, dut.clk, dut.rst)
        if loopback:
            self.source = None
            cocotb.start_soon(self._loopback())
        else:
            self.source = GmiiSource(dut.gmii_rx__data, dut.gmii_rx__er, dut.gmii_rx__en, dut.clk, dut.rst)
        self.received = []           # payloads taken from rx
        self.wire = []               # (first cycle, cycle after the last, bytes) of each frame on gmii_tx
        cocotb.start_soon(self._watch_wire())
        self.backpressure = False
        self.ready_probability = 0.5
        self.stalled = False
        cocotb.start_soon(self._consume())

    def set_destination(self, dst):
        self.dut.tx_dst__mac.value = dst["mac"]
        self.dut.tx_dst__ip.value = dst["ip"]
        self.dut.tx_dst__port.value = dst["port"]

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 4)

    async def _loopback(self):
        # A wire with one register of delay: the endpoint receives exactly what it sends.
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            dut.gmii_rx__data.value = dut.gmii_tx__data.value
            dut.gmii_rx__en.value = dut.gmii_tx__en.value
            dut.gmii_rx__er.value = dut.gmii_tx__er.value

    async def _watch_wire(self):
        # The exact bytes and timing on gmii_tx (registered outputs, sampled mid-cycle). The GmiiSink
        # decodes frames independently but does not keep every preamble byte.
        dut = self.dut
        cycle, current, start = 0, None, 0
        while True:
            await FallingEdge(dut.clk)
            cycle += 1
            assert int(dut.gmii_tx__er.value) == 0, "TX_ER was driven"
            if int(dut.gmii_tx__en.value):
                if current is None:
                    current, start = bytearray(), cycle
                current.append(int(dut.gmii_tx__data.value))
            elif current is not None:
                self.wire.append((start, cycle, bytes(current)))
                current = None

    # rx stream: drained on falling edges (rx.valid is a register, stable there).
    async def _consume(self):
        dut = self.dut
        held = None
        current = bytearray()
        while True:
            await FallingEdge(dut.clk)
            if self.stalled:
                ready = 0
            elif self.backpressure:
                ready = int(self.rng.random() < self.ready_probability)
            else:
                ready = 1
            dut.rx__ready.value = ready
            await ReadOnly()
            if int(dut.rx__valid.value):
                payload = int(dut.rx__payload.value)
                assert held is None or payload == held, "rx.payload changed before it was taken"
                if ready:
                    current.append(payload & 0xFF)
                    if payload >> 8:
                        self.received.append(bytes(current))
                        current = bytearray()
                    held = None
                else:
                    held = payload
            else:
                assert held is None, "rx.valid fell before the byte was taken"

    # tx side: tx_length then the payload, driven on falling edges.
    async def send_datagram(self, payload, *, length=None, gaps=False, dst=PEER):
        """Offer one datagram; `length` (default len(payload)) is what goes on tx_length."""
        dut = self.dut
        await FallingEdge(dut.clk)
        if gaps and self.rng.random() < 0.5:
            await ClockCycles(dut.clk, self.rng.randrange(1, 40), FallingEdge)
        self.set_destination(dst)
        dut.tx_length__valid.value = 1
        dut.tx_length__payload.value = len(payload) if length is None else length
        while True:
            await ReadOnly()
            taken = int(dut.tx_length__ready.value)
            await FallingEdge(dut.clk)
            if taken:
                break
        dut.tx_length__valid.value = 0
        for n, byte in enumerate(payload):
            if gaps and self.rng.random() < 0.2:
                dut.tx__valid.value = 0
                await ClockCycles(dut.clk, self.rng.randrange(1, 6), FallingEdge)
            dut.tx__valid.value = 1
            dut.tx__payload.value = byte | (int(n == len(payload) - 1) << 8)
            while True:
                await ReadOnly()
                taken = int(dut.tx__ready.value)
                await FallingEdge(dut.clk)
                if taken:
                    break
        dut.tx__valid.value = 0

    def counters(self):
        return {name: int(getattr(self.dut, f"counters__{name}").value) for name in COUNTER_NAMES}

    async def until(self, condition, what, cycles):
        for _ in range(cycles // 16 + 2):
            if condition():
                return
            await ClockCycles(self.dut.clk, 16)
        assert condition(), f"timed out after {cycles} cycles waiting for {what() if callable(what) else what}"

    async def check_quiet(self, expected_counters):
        await self.until(lambda: int(self.dut.tx_idle.value), "tx to go idle", 40_000)
        await ClockCycles(self.dut.clk, 64)
        assert self.sink.empty(), f"the GMII sink holds {self.sink.count()} unread frames"
        if self.source is not None:
            assert self.source.idle()
        assert int(self.dut.rx__valid.value) == 0, "a datagram is left on rx"
        assert int(self.dut.gmii_tx__en.value) == 0 and int(self.dut.gmii_tx__er.value) == 0
        assert self.counters() == expected_counters, \
            f"counters {self.counters()}, expected {expected_counters}"


def sizes(rng, count, max_payload):
    edge = [1, 17, 18, 19, 46, max_payload - 1, max_payload]
    return (edge + [rng.randrange(1, max_payload + 1) for _ in range(count)])[:max(count, len(edge))]


def random_payload(rng, n):
    return bytes(rng.randrange(256) for _ in range(n))


def expected_frame(payload, ident, src=LOCAL, dst=PEER):
    return nf.build_frame(payload, src_mac=src["mac"], dst_mac=dst["mac"], src_ip=src["ip"], dst_ip=dst["ip"],
                          src_port=src["port"], dst_port=dst["port"], ident=ident & 0xFFFF,
                          max_payload=MAX_PAYLOAD_LIMIT)


def zero_counters():
    return dict.fromkeys(COUNTER_NAMES, 0)


@cocotb.test(timeout_time=100, timeout_unit="ms")
async def transmit(dut):
    tb = TB(dut)
    await tb.reset()
    gaps = tb.params["gaps"]
    expected = zero_counters()
    ident = 0
    frames = []

    async def collect(n):
        for _ in range(n):
            frame = await tb.sink.recv()
            assert frame.error is None, "TX_ER was set"
            frames.append(frame)

    # Phase 1: datagrams with gaps (or none), with length mismatches that must be dropped.
    payloads = [random_payload(tb.rng, n) for n in sizes(tb.rng, tb.params["count"], tb.max_payload)]
    sent = []
    for k, payload in enumerate(payloads):
        if k % 7 == 3:
            # tx_length says one byte more / one byte less / zero / too much: consumed and dropped.
            wrong = [len(payload) + 1, max(0, len(payload) - 1), 0, tb.max_payload + 1][k // 7 % 4]
            if wrong != len(payload):
                await tb.send_datagram(payload, length=wrong, gaps=gaps)
                expected["tx_dropped"] += 1
        await tb.send_datagram(payload, gaps=gaps)
        sent.append(payload)
    await collect(len(sent))

    # Phase 2: back to back. A long datagram first; while it is on the wire the shorter ones behind it
    # are stored (the payload goes in at one byte per cycle, a frame takes 66 more), so from then on the
    # next frame is always waiting and the gaps must be exactly 12 cycles: line rate.
    burst = [random_payload(tb.rng, tb.max_payload)] + \
        [random_payload(tb.rng, tb.rng.choice([1, 18, 60, 200, 333])) for _ in range(10)]
    collector = cocotb.start_soon(collect(len(burst)))
    for payload in burst:
        await tb.send_datagram(payload)
    await collector
    sent += burst

    await ClockCycles(dut.clk, 4)
    assert len(tb.wire) == len(sent)
    for ident, (frame, (_, _, wire), payload) in enumerate(zip(frames, tb.wire, sent)):
        want = expected_frame(payload, ident)
        assert bytes(frame.get_payload(strip_fcs=False)) == want, \
            f"frame {ident} ({len(payload)}-byte payload) as decoded by GmiiSink differs from the model"
        assert frame.check_fcs()
        assert wire == nf.gmii_bytes(want), f"frame {ident} on the wire differs from the model"
    for (_, end, _), (start, _, _) in zip(tb.wire, tb.wire[1:]):
        assert start - end >= 12, "inter-frame gap below 12 bytes"
    gaps_in_burst = [start - end for (_, end, _), (start, _, _) in zip(tb.wire[-len(burst):],
                                                                       tb.wire[-len(burst) + 1:])]
    assert gaps_in_burst == [12] * (len(burst) - 1), f"gaps between back-to-back frames: {gaps_in_burst}"
    expected["frames_sent"] = len(sent)
    await tb.check_quiet(expected)


def corrupt(frame, offset, xor=0x01, fix_fcs=True):
    body = bytearray(frame[:-4])
    body[offset] ^= xor
    return bytes(body) + (nf.fcs(bytes(body)) if fix_fcs else frame[-4:])


def receive_cases(rng, count, max_payload):
    """(frame bytes with FCS, rx_er byte index or None) for a mix of good and bad frames."""
    from scapy.all import IP, UDP, Ether, Raw

    def peer_frame(payload, with_udp_checksum=False, **kw):
        args = dict(src_mac=PEER["mac"], dst_mac=LOCAL["mac"], src_ip=PEER["ip"], dst_ip=LOCAL["ip"],
                    src_port=PEER["port"], dst_port=LOCAL["port"], max_payload=max_payload)
        args.update(kw)
        return nf.build_frame(payload, with_udp_checksum=with_udp_checksum, **args)

    def scapy_frame(payload, **udp_kw):
        body = bytes(Ether(src=nf.mac_str(PEER["mac"]), dst=nf.mac_str(LOCAL["mac"]))
                     / IP(src=nf.ip_str(PEER["ip"]), dst=nf.ip_str(LOCAL["ip"]), ttl=17)
                     / UDP(sport=PEER["port"], dport=LOCAL["port"], **udp_kw) / Raw(payload))
        body += bytes(max(0, 60 - len(body)))
        return body + nf.fcs(body)

    cases = []
    for k, n in enumerate(sizes(rng, count, max_payload)):
        payload = random_payload(rng, n)
        good = peer_frame(payload, with_udp_checksum=bool(k % 2))
        cases.append((good, None))
        kind = k % 12
        if kind == 0:
            cases.append((corrupt(good, rng.randrange(len(good) - 4), 1 << rng.randrange(8), False), None))
        elif kind == 1:
            cases.append((corrupt(good, 24), None))                                  # IPv4 checksum
        elif kind == 2 and n >= 2:
            cases.append((corrupt(peer_frame(payload, True), 42 + n // 2), None))   # UDP checksum
        elif kind == 3:
            cases.append((peer_frame(payload, dst_port=LOCAL["port"] + 1), None))
        elif kind == 4:
            cases.append((peer_frame(payload, dst_mac=0x02005E1000FF), None))
        elif kind == 5:
            cases.append((good, rng.randrange(len(good))))                            # RX_ER
        elif kind == 6:
            cases.append((scapy_frame(payload), None))                                # scapy's checksum
        elif kind == 7:
            cases.append((peer_frame(payload, dst_ip=0x0A0100FF), None))
        elif kind == 8:
            cases.append((corrupt(good, 12, 0x80), None))                             # EtherType
        elif kind == 9:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
            cases.append((body + nf.fcs(body), None))                                 # runt
        elif kind == 10:
            body = bytes(42 + max_payload + 1)
            cases.append((body + nf.fcs(body), None))                                 # too long
        elif kind == 11:
            cases.append((scapy_frame(payload, chksum=0), None))
    return cases


def predict(cases, max_payload):
    payloads, counts = [], zero_counters()
    for frame, er in cases:
        try:
            datagram = nf.parse_frame(frame, local_mac=LOCAL["mac"], local_ip=LOCAL["ip"],
                                      local_port=LOCAL["port"], max_payload=max_payload,
                                      rx_error=er is not None)
        except nf.FrameError as error:
            counts[error.counter] += 1
        else:
            payloads.append(datagram.payload)
            counts["frames_received"] += 1
    return payloads, counts


def gmii_frame(frame, er):
    from cocotbext.eth import GmiiFrame
    g = GmiiFrame.from_raw_payload(frame)
    if er is not None:
        g.error = [0] * len(g.data)
        g.error[8 + er] = 1
    return g


@cocotb.test(timeout_time=200, timeout_unit="ms")
async def receive(dut):
    tb = TB(dut)
    await tb.reset()
    tb.backpressure = tb.params["backpressure"]
    expected = zero_counters()
    delivered = []

    async def phase(cases, *, ifg, one_by_one):
        payloads, counts = predict(cases, tb.max_payload)
        start = len(tb.received)
        tb.source.ifg = ifg
        # One by one: the consumer takes a byte in half the cycles, and each frame waits until at most one
        # payload is still queued (a sender with credits). Back to back at line rate, the consumer must
        # keep up on average (95.7 % of the cycles carry payload at 1472 bytes): 98 % ready, in random
        # stalls that the buffer absorbs. Neither may overflow; a stalled consumer is tested below.
        tb.ready_probability = 0.5 if one_by_one else 0.98
        accepted = 0
        for frame, er in cases:
            if one_by_one:
                await tb.until(lambda: len(tb.received) - start >= accepted - 1, "the consumer", 40_000)
                await tb.source.send(gmii_frame(frame, er))
                await tb.source.wait()
                await ClockCycles(dut.clk, tb.rng.randrange(1, 60))
                accepted += len(predict([(frame, er)], tb.max_payload)[0])
            else:
                tb.source.send_nowait(gmii_frame(frame, er))
        await tb.source.wait()
        await tb.until(lambda: len(tb.received) >= start + len(payloads),
                       lambda: f"{len(payloads)} datagrams (got {len(tb.received) - start}, counters "
                               f"{tb.counters()})", 400_000)
        assert tb.received[start:] == payloads
        for name, value in counts.items():
            expected[name] += value
        delivered.extend(payloads)
        await ClockCycles(dut.clk, 20)
        assert tb.counters() == expected, f"counters {tb.counters()}, expected {expected}"

    count = tb.params["count"]
    tb.log.info("one frame at a time, random gaps")
    await phase(receive_cases(tb.rng, count, tb.max_payload), ifg=12, one_by_one=True)
    tb.log.info("back to back, 12-byte gaps")
    await phase(receive_cases(tb.rng, count, tb.max_payload), ifg=12, one_by_one=False)
    tb.log.info("back to back, 1-cycle gaps")
    await phase(receive_cases(tb.rng, count // 2, tb.max_payload), ifg=1, one_by_one=False)

    # Overflow: the consumer stops; the buffer (2 × max_payload rounded up to a power of two) takes as
    # many whole payloads as fit, the rest are dropped and counted.
    tb.log.info("stalled consumer: overflow")
    capacity = 1
    while capacity < 2 * tb.max_payload:
        capacity *= 2
    tb.stalled = True
    payloads = [random_payload(tb.rng, tb.max_payload) for _ in range(4)]
    start = len(tb.received)
    for payload in payloads:
        tb.source.send_nowait(gmii_frame(nf.build_frame(
            payload, src_mac=PEER["mac"], dst_mac=LOCAL["mac"], src_ip=PEER["ip"], dst_ip=LOCAL["ip"],
            src_port=PEER["port"], dst_port=LOCAL["port"], max_payload=tb.max_payload), None))
    await tb.source.wait()
    await ClockCycles(dut.clk, 40)
    fit = capacity // tb.max_payload
    expected["overflows"] += len(payloads) - fit
    expected["frames_received"] += fit
    assert tb.counters() == expected, f"counters {tb.counters()}, expected {expected}"
    tb.stalled = False
    await tb.until(lambda: len(tb.received) >= start + fit, f"{fit} datagrams after the stall", 40_000)
    assert tb.received[start:] == payloads[:fit]
    await tb.check_quiet(expected)


@cocotb.test(timeout_time=200, timeout_unit="ms")
async def loopback(dut):
    tb = TB(dut, loopback=True)
    dut.tx_dst__mac.value = LOCAL["mac"]
    await tb.reset()
    tb.backpressure = True          # the rx consumer takes a byte in about half the cycles
    count = tb.params["count"]
    payloads = [random_payload(tb.rng, n) for n in sizes(tb.rng, count, tb.max_payload)]
    captured = []

    async def capture():
        while len(captured) < len(payloads):
            frame = await tb.sink.recv()
            captured.append((get_sim_time("ns") * 1e-9, bytes(frame.get_payload(strip_fcs=False))))

    # Phase 1: at most two datagrams in flight (what the receive buffer holds), as a sender with credits
    # would do: under any rx backpressure, nothing may be lost.
    capturer = cocotb.start_soon(capture())
    for k, payload in enumerate(payloads):
        await tb.until(lambda: len(tb.received) >= k - 2, f"datagram {k - 2} back", 100_000)
        await tb.send_datagram(payload, gaps=k % 2 == 1, dst=LOCAL)
    await tb.until(lambda: len(tb.received) >= len(payloads),
                   lambda: f"{len(payloads)} datagrams back (got {len(tb.received)}, {tb.counters()})",
                   100_000)
    await capturer
    assert tb.received == payloads
    for ident, ((_, frame), payload) in enumerate(zip(captured, payloads)):
        assert frame == expected_frame(payload, ident, src=LOCAL, dst=LOCAL)

    # The capture as a pcap, checked by scapy (and tshark when installed).
    from scapy.all import IP, UDP, Ether, rdpcap
    path = Path("loopback.pcap").resolve()
    nf.write_pcap(path, [f for _, f in captured], timestamps=[t for t, _ in captured])
    packets = rdpcap(str(path))
    assert len(packets) == len(payloads)
    for packet, payload in zip(packets, payloads):
        ip = packet[IP]
        check = ip.copy()
        del check.chksum
        assert IP(bytes(check)).chksum == ip.chksum, "scapy disagrees with the IPv4 checksum"
        assert packet[UDP].len == 8 + len(payload) and bytes(packet[UDP].payload)[:len(payload)] == payload
        assert packet[Ether].dst == nf.mac_str(LOCAL["mac"])
    tshark = shutil.which("tshark")
    if tshark:
        result = subprocess.run([tshark, "-r", str(path), "-o", "eth.check_fcs:TRUE",
                                 "-o", "ip.check_checksum:TRUE", "-T", "fields", "-e", "eth.fcs.status",
                                 "-e", "ip.checksum.status"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        statuses = [line.split("\t") for line in result.stdout.splitlines()]
        assert statuses == [["1", "1"]] * len(payloads), f"tshark: {result.stdout}"
        tb.log.info("tshark: FCS and IPv4 checksum good on all %d frames", len(payloads))
    else:
        tb.log.info("tshark not installed: pcap checked by scapy only")

    # Phase 2: no credits, the consumer at half rate: some datagrams overflow the buffer. The ones that
    # arrive are whole and in order, and every frame is either delivered or counted as an overflow.
    # Twice the buffer's worth of the largest payloads: at half rate the consumer cannot keep up.
    flood = [random_payload(tb.rng, tb.max_payload)
             for _ in range(2 * default_buffer_bytes(tb.max_payload) // tb.max_payload + 4)]
    start = len(tb.received)
    for payload in flood:
        await tb.send_datagram(payload, dst=LOCAL)
    await tb.until(lambda: int(dut.tx_idle.value), "tx to go idle", 100_000)
    await tb.until(lambda: len(tb.received) - start + tb.counters()["overflows"] >= len(flood),
                   lambda: f"{len(flood)} datagrams delivered or dropped ({tb.counters()})", 100_000)
    got = tb.received[start:]
    it = iter(flood)
    assert all(any(g == f for f in it) for g in got), "a delivered datagram is not one that was sent"
    overflows = tb.counters()["overflows"]
    assert overflows > 0, "the flood should have overflowed the receive buffer"
    assert len(got) + overflows == len(flood)
    tb.sink.clear()          # the flood's frames were checked through the loopback

    expected = zero_counters()
    expected["frames_sent"] = len(payloads) + len(flood)
    expected["frames_received"] = len(payloads) + len(got)
    expected["overflows"] = overflows
    await tb.check_quiet(expected)
