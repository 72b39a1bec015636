"""Tests of the host link: the device-side model (host/link_model.py), the client (host/link.py), and the
two together over a fault-injecting transport running on virtual time."""

import math
import random
import time

import numpy as np
import pytest

from tensornic.errors import (
    BadAddress,
    BadAlignment,
    BadLength,
    BadOpcode,
    DeviceError,
    DeviceTimeout,
    LinkError,
    ReadOnly,
    TransportError,
)
from tensornic.link import LinkClient
from tensornic.link_model import LinkModel, MemoryRegion, RegionBusy
from tensornic.rtl.link_format import (
    CRC_BYTES,
    REQUEST_HEADER_BYTES,
    RESPONSE_FIELDS,
    RESPONSE_HEADER_BYTES,
    SYNC_REQUEST,
    SYNC_RESPONSE,
    Op,
    Status,
    crc32,
    encode_request,
    encode_response,
)
from tensornic.transport import Transport

RAM_BASE, RAM_SIZE = 0x0000_0000, 64 * 1024
ROM_BASE, ROM_SIZE = 0x0001_0000, 256
BUSY_BASE, BUSY_SIZE = 0x0002_0000, 64


# -- helpers ---------------------------------------------------------------------------------------------

class BusyRegion(MemoryRegion):
    """A region that answers BUSY to its first `busy_for` accesses."""

    def __init__(self, name, base, size, busy_for=0):
        super().__init__(name, base, size)
        self.busy_for = busy_for

    def _maybe_busy(self):
        if self.busy_for:
            self.busy_for -= 1
            raise RegionBusy()

    def read(self, offset, nbytes):
        self._maybe_busy()
        return super().read(offset, nbytes)

    def write(self, offset, data):
        self._maybe_busy()
        super().write(offset, data)


def make_model(max_transfer=4096, busy_for=0):
    rom = MemoryRegion("id_rom", ROM_BASE, ROM_SIZE, read_only=True, init=bytes(range(256)))
    ram = MemoryRegion("ram", RAM_BASE, RAM_SIZE)
    busy = BusyRegion("busy", BUSY_BASE, BUSY_SIZE, busy_for=busy_for)
    return LinkModel([ram, rom, busy], max_transfer=max_transfer)


def decode_responses(stream):
    """Split a well-formed response stream into (status, seq, data) tuples, checking every CRC."""
    out = []
    pos = 0
    while pos < len(stream):
        assert stream[pos] == SYNC_RESPONSE
        status, seq, length = RESPONSE_FIELDS.unpack_from(stream, pos + 1)
        hdr_crc = int.from_bytes(stream[pos + 5:pos + 9], "little")
        assert crc32(stream[pos + 1:pos + 5]) == hdr_crc
        pos += RESPONSE_HEADER_BYTES
        data = b""
        if length:
            data = stream[pos:pos + length]
            assert crc32(data) == int.from_bytes(stream[pos + length:pos + length + 4], "little")
            pos += length + CRC_BYTES
        out.append((Status(status), seq, bytes(data)))
    return out


def one_response(model, frame):
    responses = decode_responses(model.feed(frame))
    assert len(responses) == 1, responses
    return responses[0]


def raw_write(seq, addr, payload, length=None, op=Op.WRITE):
    """A WRITE frame with an explicit length field (which may disagree with the payload)."""
    payload = bytes(payload)
    length = len(payload) if length is None else length
    frame = encode_request(op, seq, addr, length=length)  # header only (no payload given)
    return frame + payload + crc32(payload).to_bytes(4, "little")


class FaultInjector:
    """Per-byte faults at independent rates: flip one bit, drop the byte, or send it twice.

    The gap to the next faulty byte is drawn from the geometric distribution, so clean bytes cost nothing.
    """

    def __init__(self, rng, flip=0.0, drop=0.0, dup=0.0):
        self.rng = rng
        self.flip, self.drop, self.dup = flip, drop, dup
        self.rate = flip + drop + dup
        self.flips = self.drops = self.dups = 0
        self._log1mp = math.log1p(-self.rate) if self.rate else 0.0
        self._gap = self._draw_gap()

    def _draw_gap(self):
        if not self.rate:
            return math.inf
        return int(math.log(1.0 - self.rng.random()) / self._log1mp)

    def apply(self, data):
        n = len(data)
        if self._gap >= n:
            self._gap -= n
            return data
        out = bytearray()
        pos = 0
        rng = self.rng
        while pos + self._gap < n:
            i = pos + self._gap
            out += data[pos:i]
            byte = data[i]
            r = rng.random() * self.rate
            if r < self.flip:
                out.append(byte ^ (1 << rng.randrange(8)))
                self.flips += 1
            elif r < self.flip + self.drop:
                self.drops += 1
            else:
                out.append(byte)
                out.append(byte)
                self.dups += 1
            pos = i + 1
            self._gap = self._draw_gap()
        self._gap -= n - pos
        out += data[pos:]
        return bytes(out)


class VirtualTimeTransport(Transport):
    """A test double on virtual time: `_rx` holds what the device said; a read that cannot be satisfied
    waits out its whole timeout at once (the peer answers synchronously, so nothing more can come)."""

    now = 0.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self._advance(seconds)

    def _advance(self, seconds):
        self.now += max(0.0, seconds)

    def read(self, size, timeout):
        rx = self._rx
        if len(rx) >= size:
            self._rx = rx[size:]
            return rx[:size]
        self._advance(timeout)
        self._rx = b""
        return rx

    def drain(self):
        n = len(self._rx)
        self._rx = b""
        return n

    def close(self):
        pass


class FaultyTransport(VirtualTimeTransport):
    """Connects a LinkClient to a LinkModel through fault injectors, on virtual time.

    Nothing sleeps: `clock()`/`sleep()` are handed to the client, writes take their line time, and a read
    that cannot be satisfied waits out its whole timeout at once (the model answers synchronously, so no
    more bytes can come). Whenever the device has held a partial frame for `resync_timeout` of silence,
    it runs its idle resync, as the gateware would.
    """

    def __init__(self, model, *, flip=0.0, drop=0.0, dup=0.0, seed=0, baud=3_000_000,
                 resync_timeout=0.02):
        self.model = model
        self.baud = baud
        self.resync_timeout = resync_timeout
        rng = random.Random(seed)
        self.h2d = FaultInjector(random.Random(rng.random()), flip, drop, dup)
        self.d2h = FaultInjector(random.Random(rng.random()), flip, drop, dup)
        self.now = 0.0
        self._last_rx = 0.0  # when the device last received a byte
        self._rx = b""       # device output waiting for the host
        self.writes = []     # every request as the client sent it (before faults), if `log` is set
        self.log = False

    @property
    def seconds_per_byte(self):
        return 10 / self.baud

    def _advance(self, seconds):
        self.now += max(0.0, seconds)
        if not self.model.idle and self.now - self._last_rx >= self.resync_timeout:
            self.model.idle_timeout()

    def write(self, data):
        data = bytes(data)
        if self.log:
            self.writes.append(data)
        self._advance(len(data) * 10 / self.baud)
        self._last_rx = self.now
        answer = self.model.feed(self.h2d.apply(data))
        if answer:
            self._rx += self.d2h.apply(answer)


class ScriptedTransport(VirtualTimeTransport):
    """Answers each request with `responder(request) -> bytes`, on virtual time."""

    def __init__(self, responder):
        self.responder = responder
        self.now = 0.0
        self.requests = []
        self._rx = b""
        self.alive_checks = 0

    def write(self, data):
        self.requests.append(bytes(data))
        self._rx += self.responder(bytes(data))

    def check_alive(self):
        self.alive_checks += 1


def client_for(transport, **kwargs):
    return LinkClient(transport, sleep=transport.sleep, clock=transport.clock, **kwargs)


def attempt_budget(client, request_bytes, response_bytes):
    return client.timeout + (request_bytes + response_bytes) * client.seconds_per_byte * 1.5


def backoff_total(retries):
    return sum(min(0.001 * 2 ** k, 0.1) for k in range(retries))


# -- the model -------------------------------------------------------------------------------------------

def test_model_nop_read_write_ok():
    model = make_model()
    assert one_response(model, encode_request(Op.NOP, 7, 0)) == (Status.OK, 7, b"")
    data = bytes(range(1, 33))
    assert one_response(model, encode_request(Op.WRITE, 8, 0x100, data)) == (Status.OK, 8, b"")
    assert one_response(model, encode_request(Op.READ, 9, 0x100, length=32)) == (Status.OK, 9, data)
    assert one_response(model, encode_request(Op.READ, 10, ROM_BASE + 4, length=8)) == (
        Status.OK, 10, bytes(range(4, 12)))
    assert model.requests == 4 and model.writes_executed == 1


@pytest.mark.parametrize("frame, status", [
    (raw_write(1, 0x40, b"\x11" * 8)[:-1] + b"\x00", Status.CRC_ERROR),
    (encode_request(0x09, 1, 0x40, length=4), Status.BAD_OPCODE),
    (encode_request(0x00, 1, 0x40, length=4), Status.BAD_OPCODE),
    (encode_request(Op.READ, 1, RAM_SIZE - 4, length=8), Status.BAD_ADDRESS),       # crosses the end
    (encode_request(Op.READ, 1, 0x0003_0000, length=4), Status.BAD_ADDRESS),        # unmapped
    (encode_request(Op.READ, 1, ROM_BASE - 4, length=8), Status.BAD_ADDRESS),       # spans two regions
    (encode_request(Op.READ, 1, 0x40, length=0), Status.BAD_LENGTH),
    (encode_request(Op.READ, 1, 0x40, length=6), Status.BAD_LENGTH),
    (encode_request(Op.READ, 1, 0x40, length=4100), Status.BAD_LENGTH),
    (encode_request(Op.READ, 1, 0x42, length=4), Status.BAD_ALIGNMENT),
    (raw_write(1, ROM_BASE, b"\x00" * 8), Status.READ_ONLY),
    (encode_request(Op.READ, 1, BUSY_BASE, length=4), Status.BUSY),
    (raw_write(1, BUSY_BASE, b"\x00" * 4), Status.BUSY),
    # the order of the checks: opcode > alignment > length > range > read-only
    (encode_request(0x7F, 1, 0x41, length=3), Status.BAD_OPCODE),
    (encode_request(Op.READ, 1, 0x0003_0002, length=3), Status.BAD_ALIGNMENT),
    (encode_request(Op.READ, 1, 0x0003_0000, length=3), Status.BAD_LENGTH),
    (raw_write(1, ROM_BASE + ROM_SIZE - 4, b"\x00" * 8), Status.BAD_ADDRESS),
    (raw_write(1, ROM_BASE, b"\x00" * 8, length=6)[:-2], Status.BAD_LENGTH),
])
def test_model_status_codes(frame, status):
    model = make_model(busy_for=1)
    before = bytes(model.regions[0].data)
    assert one_response(model, frame) == (status, 1, b"")
    assert bytes(model.regions[0].data) == before
    assert model.writes_executed == 0
    # and the link is still in step
    assert one_response(model, encode_request(Op.NOP, 2, 0)) == (Status.OK, 2, b"")


def test_model_nop_ignores_address_and_length():
    model = make_model()
    assert one_response(model, encode_request(Op.NOP, 3, 0x1233, length=7)) == (Status.OK, 3, b"")


@pytest.mark.parametrize("addr, length, payload_len", [
    (ROM_BASE, 16, 16),          # READ_ONLY
    (0x0009_0000, 16, 16),       # BAD_ADDRESS
    (0x42, 16, 16),              # BAD_ALIGNMENT
    (0x40, 10, 10),              # BAD_LENGTH (not a multiple of 4)
    (0x40, 0, 0),                # BAD_LENGTH (zero): answered at once; its CRC bytes are hunted over
    (0x40, 4100, 4100),          # BAD_LENGTH (above max_transfer)
])
def test_model_rejected_write_consumes_exactly_its_payload(addr, length, payload_len):
    model = make_model()
    # The payload holds a complete, valid NOP frame: a device that parsed it would answer twice.
    nop = encode_request(Op.NOP, 99, 0)
    payload = (nop + b"\xA5" * payload_len)[:payload_len]
    frame = raw_write(5, addr, payload, length=length)
    responses = decode_responses(model.feed(frame))
    assert len(responses) == 1 and responses[0][1] == 5 and responses[0][0] != Status.OK
    assert model.idle and model.writes_executed == 0
    assert one_response(model, encode_request(Op.READ, 6, 0, length=4)) == (Status.OK, 6, bytes(4))


def test_model_rejected_write_waits_for_its_payload():
    model = make_model()
    frame = raw_write(5, ROM_BASE, b"\x01" * 64)
    assert model.feed(frame[:-1]) == b""          # one byte short: no answer yet
    assert decode_responses(model.feed(frame[-1:])) == [(Status.READ_ONLY, 5, b"")]


def test_model_duplicate_write_executed_once():
    model = make_model()
    ram = model.regions[0]
    frame = encode_request(Op.WRITE, 42, 0x200, b"\xAB" * 16)
    assert one_response(model, frame) == (Status.OK, 42, b"")
    ram.data[0x200:0x210] = b"\x00" * 16         # something else changes the memory...
    assert one_response(model, frame) == (Status.OK, 42, b"")  # ...the retry does not undo it
    assert bytes(ram.data[0x200:0x210]) == b"\x00" * 16
    assert model.writes_executed == 1 and model.duplicate_writes == 1
    # A corrupted copy in between gets CRC_ERROR and changes neither memory nor the remembered write.
    bad = frame[:-1] + bytes([frame[-1] ^ 1])
    assert one_response(model, bad) == (Status.CRC_ERROR, 42, b"")
    assert one_response(model, frame) == (Status.OK, 42, b"")
    assert model.writes_executed == 1 and model.duplicate_writes == 2
    # Reads in between do not matter either.
    assert one_response(model, encode_request(Op.READ, 43, 0x200, length=4)) == (Status.OK, 43, bytes(4))
    assert one_response(model, frame) == (Status.OK, 42, b"")
    assert model.writes_executed == 1
    # A different seq is a different request: executed.
    assert one_response(model, encode_request(Op.WRITE, 44, 0x200, b"\xAB" * 16)) == (Status.OK, 44, b"")
    assert model.writes_executed == 2 and bytes(ram.data[0x200:0x210]) == b"\xAB" * 16


def test_model_nop_forgets_the_remembered_write():
    model = make_model()
    ram = model.regions[0]
    frame = encode_request(Op.WRITE, 1, 0x300, b"\x5A" * 8)
    one_response(model, frame)
    ram.data[0x300:0x308] = bytes(8)
    assert one_response(model, encode_request(Op.NOP, 2, 0)) == (Status.OK, 2, b"")
    assert one_response(model, frame) == (Status.OK, 1, b"")
    assert model.writes_executed == 2 and bytes(ram.data[0x300:0x308]) == b"\x5A" * 8


def test_model_busy_write_is_not_remembered():
    model = make_model(busy_for=1)
    frame = encode_request(Op.WRITE, 3, BUSY_BASE, b"\x77" * 4)
    assert one_response(model, frame) == (Status.BUSY, 3, b"")
    assert one_response(model, frame) == (Status.OK, 3, b"")
    assert model.writes_executed == 1
    assert bytes(model.regions[2].data[:4]) == b"\x77" * 4


def test_model_read_is_executed_again():
    model = make_model()
    frame = encode_request(Op.READ, 4, 0x10, length=4)
    assert one_response(model, frame)[2] == bytes(4)
    model.regions[0].data[0x10:0x14] = b"\x01\x02\x03\x04"
    assert one_response(model, frame)[2] == b"\x01\x02\x03\x04"


def test_model_garbage_before_a_request():
    model = make_model()
    garbage = bytes(b for b in random.Random(1).randbytes(500) if b != SYNC_REQUEST)
    assert model.feed(garbage) == b""
    assert one_response(model, encode_request(Op.READ, 1, ROM_BASE, length=4)) == (
        Status.OK, 1, bytes(range(4)))
    assert model.discarded_bytes == len(garbage)


def test_model_garbage_with_sync_bytes_then_idle_resync():
    model = make_model()
    model.feed(b"\x00\xA5\x13\x37")                # a sync byte starts a (bogus) frame
    assert not model.idle
    model.idle_timeout()
    assert model.idle and model.resyncs == 1
    assert one_response(model, encode_request(Op.NOP, 1, 0)) == (Status.OK, 1, b"")


@pytest.mark.parametrize("cut", [1, 5, REQUEST_HEADER_BYTES, REQUEST_HEADER_BYTES + 10, -1])
def test_model_truncated_write_changes_nothing(cut):
    model = make_model()
    frame = encode_request(Op.WRITE, 1, 0x400, b"\xEE" * 32)
    assert model.feed(frame[:cut]) == b""
    model.idle_timeout()
    assert model.resyncs == 1 and model.writes_executed == 0
    assert bytes(model.regions[0].data[0x400:0x420]) == bytes(32)
    # without the idle resync, the next request would be swallowed; with it, it is answered
    assert one_response(model, encode_request(Op.READ, 2, 0x400, length=4)) == (Status.OK, 2, bytes(4))


def test_model_truncated_frame_swallows_the_next_without_resync():
    model = make_model()
    model.feed(encode_request(Op.READ, 1, 0, length=4)[:6])
    assert model.feed(encode_request(Op.NOP, 2, 0)) == b""   # taken as the rest of the first header
    assert model.header_errors == 1


@pytest.mark.parametrize("byte", range(1, REQUEST_HEADER_BYTES))
def test_model_corrupted_header_dropped_silently(byte):
    model = make_model()
    frame = bytearray(encode_request(Op.READ, 1, 0x40, length=4))
    frame[byte] ^= 0x10
    assert model.feed(bytes(frame)) == b""
    assert model.header_errors == 1 and model.idle
    assert one_response(model, encode_request(Op.READ, 2, 0x40, length=4)) == (Status.OK, 2, bytes(4))


def test_model_corrupted_write_header_then_resync():
    model = make_model()
    frame = bytearray(encode_request(Op.WRITE, 1, 0x40, b"\xA5" * 40))  # payload full of sync bytes
    frame[3] ^= 0x01
    assert model.feed(bytes(frame)) == b""
    model.idle_timeout()
    assert one_response(model, encode_request(Op.READ, 2, 0x40, length=4)) == (Status.OK, 2, bytes(4))
    assert model.writes_executed == 0


def test_model_is_byte_by_byte():
    """Feeding a stream whole, byte by byte or in random pieces gives the same answers and state."""
    rng = random.Random(7)
    frames = []
    for seq in range(300):
        kind = rng.randrange(6)
        addr = rng.randrange(0, RAM_SIZE // 4) * 4
        if kind == 0:
            payload = rng.randbytes(rng.randrange(1, 9) * 4)
            frames.append(encode_request(Op.WRITE, seq, addr % 0x8000, payload))
        elif kind == 1:
            frames.append(encode_request(Op.READ, seq, addr, length=rng.randrange(1, 9) * 4))
        elif kind == 2:
            frames.append(raw_write(seq, ROM_BASE, rng.randbytes(8)))
        elif kind == 3:
            frames.append(rng.randbytes(rng.randrange(1, 30)))
        elif kind == 4:
            f = bytearray(encode_request(Op.READ, seq, addr, length=8))
            f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
            frames.append(bytes(f))
        else:
            frames.append(encode_request(Op.NOP, seq, 0))
    stream = b"".join(frames)

    def run(pieces):
        model = make_model()
        out = b"".join(model.feed(p) for p in pieces)
        return out, bytes(model.regions[0].data), model.requests, model.header_errors

    whole = run([stream])
    assert whole == run([stream[i:i + 1] for i in range(len(stream))])
    cuts = sorted(rng.sample(range(1, len(stream)), 200))
    assert whole == run([stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])])
    assert whole[2] > 100


# -- the client ------------------------------------------------------------------------------------------

def clean_link(**kwargs):
    model = make_model()
    transport = FaultyTransport(model)
    return model, transport, client_for(transport, **kwargs)


def test_client_round_trip_and_chunking():
    model, transport, client = clean_link(max_transfer=256)
    calls = []
    client.progress = lambda done, total: calls.append((done, total))
    data = bytes(random.Random(3).randbytes(1000))
    client.write(0x1000, data)
    assert calls == [(256, 1000), (512, 1000), (768, 1000), (1000, 1000)]
    assert bytes(model.regions[0].data[0x1000:0x1000 + 1000]) == data
    calls.clear()
    assert client.read(0x1000, 1000) == data
    assert len(calls) == 4
    assert client.stats.transactions == 8 and client.stats.retries == 0
    assert client.stats.payload_bytes == 2000
    assert client.stats.bytes_sent == sum(  # every byte accounted for
        REQUEST_HEADER_BYTES + n + 4 for n in (256, 256, 256, 232)) + 4 * REQUEST_HEADER_BYTES
    assert 0.8 < client.stats.efficiency < 1.0
    client.nop()
    assert client.read(0, 0) == b"" and client.stats.transactions == 9


def test_client_efficiency_of_4k_transfers():
    model, transport, client = clean_link()
    client.write(0, bytes(4096))
    assert client.read(0, 4096) == bytes(4096)
    assert client.stats.efficiency == pytest.approx(4096 / (13 + 4096 + 4 + 9))


def test_client_accepts_numpy_and_memoryview():
    model, _, client = clean_link()
    arr = np.arange(64, dtype=np.float32).reshape(8, 8)
    client.write(0x2000, arr)
    assert bytes(model.regions[0].data[0x2000:0x2100]) == arr.tobytes()
    client.write(0x3000, arr.T)                      # not C-contiguous: written in logical order
    assert np.array_equal(np.frombuffer(client.read(0x3000, 256), np.float32).reshape(8, 8), arr.T)
    client.write(0x4000, memoryview(b"abcdefgh"))
    assert client.read(0x4000, 8) == b"abcdefgh"


@pytest.mark.parametrize("call", [
    lambda c: c.read(2, 4),
    lambda c: c.read(4, 6),
    lambda c: c.write(1, b"abcd"),
    lambda c: c.write(4, b"abcde"),
    lambda c: c.read(-4, 4),
    lambda c: c.read(0xFFFF_FFFC, 8),
    lambda c: c.read(np.uint32(6), 4),
])
def test_client_rejects_unaligned_arguments(call):
    _, transport, client = clean_link()
    with pytest.raises(ValueError, match="multiples of 4|address space"):
        call(client)
    assert client.stats.bytes_sent == 0


@pytest.mark.parametrize("call, exc, status", [
    (lambda c: c.read(0x0009_0000, 4), BadAddress, Status.BAD_ADDRESS),
    (lambda c: c.read(RAM_SIZE - 4, 8), BadAddress, Status.BAD_ADDRESS),
    (lambda c: c.write(ROM_BASE, b"\x00" * 4), ReadOnly, Status.READ_ONLY),
    (lambda c: c.read(0, 8192), BadLength, Status.BAD_LENGTH),      # the client's max_transfer is too big
])
def test_client_error_status_raises_at_once(call, exc, status):
    _, transport, client = clean_link(max_transfer=8192)
    with pytest.raises(exc) as info:
        call(client)
    assert info.value.status == status
    assert status.name in str(info.value) and "0x" in str(info.value)
    assert client.stats.transactions == 1 and client.stats.retries == 0


@pytest.mark.parametrize("status, exc", [
    (Status.BAD_OPCODE, BadOpcode),
    (Status.BAD_ALIGNMENT, BadAlignment),
    (Status.BAD_LENGTH, BadLength),
    (Status.BAD_ADDRESS, BadAddress),
    (Status.READ_ONLY, ReadOnly),
    (0x33, DeviceError),
])
def test_client_maps_every_error_status(status, exc):
    transport = ScriptedTransport(lambda req: encode_response(status, req[2]))
    client = client_for(transport)
    with pytest.raises(exc, match=r"WRITE of 8 bytes at 0x00000010") as info:
        client.write(0x10, bytes(8))
    assert info.value.status == status
    assert len(transport.requests) == 1


def test_client_retries_busy_and_crc_error():
    answers = [Status.BUSY, Status.CRC_ERROR, Status.BUSY, Status.OK]
    transport = ScriptedTransport(lambda req: encode_response(answers.pop(0), req[2]))
    client = client_for(transport)
    client.write(0x10, bytes(8))
    assert len(transport.requests) == 4 and len(set(transport.requests)) == 1  # same frame, same seq
    s = client.stats
    assert (s.retries, s.busy_status, s.crc_error_status, s.transactions) == (3, 2, 1, 1)
    assert transport.alive_checks == 3
    assert transport.now == pytest.approx(0.001 + 0.002 + 0.004)  # backoff only: every answer was there


def test_client_busy_forever():
    transport = ScriptedTransport(lambda req: encode_response(Status.BUSY, req[2]))
    client = client_for(transport, retries=4)
    with pytest.raises(DeviceError, match="BUSY") as info:
        client.read(0, 4)
    assert info.value.status == Status.BUSY and len(transport.requests) == 5


def test_client_crc_error_forever_is_a_link_error():
    transport = ScriptedTransport(lambda req: encode_response(Status.CRC_ERROR, req[2]))
    client = client_for(transport, retries=3)
    with pytest.raises(LinkError, match="CRC"):
        client.write(0, bytes(4))


def test_client_busy_region_through_the_model():
    model = make_model(busy_for=3)
    transport = FaultyTransport(model)
    client = client_for(transport)
    client.write(BUSY_BASE, b"\x01\x02\x03\x04")
    assert client.read(BUSY_BASE, 4) == b"\x01\x02\x03\x04"
    assert client.stats.busy_status == 3 and model.writes_executed == 1


def test_client_sequence_numbers():
    model, transport, client = clean_link()
    transport.log = True
    for _ in range(300):
        client.nop()
    seqs = [w[2] for w in transport.writes]
    assert seqs == [i & 0xFF for i in range(300)]


def test_client_silent_device_times_out_within_budget():
    transport = ScriptedTransport(lambda req: b"")
    client = client_for(transport, timeout=0.25, retries=5, seconds_per_byte=1e-5)
    with pytest.raises(DeviceTimeout, match="check the port, the baud rate") as info:
        client.read(0x100, 64)
    budget = 6 * attempt_budget(client, REQUEST_HEADER_BYTES, RESPONSE_HEADER_BYTES + 64 + 4) \
        + backoff_total(5)
    assert transport.now == pytest.approx(budget)
    assert len(transport.requests) == 6 and len(set(transport.requests)) == 1
    assert client.stats.timeouts == 6 and client.stats.retries == 5
    assert "READ of 64 bytes at 0x00000100" in str(info.value)


class SilentRealTransport(Transport):
    """Sleeps for real when asked to wait: the wall-clock check of the client's timeout budget."""

    baud = 115200

    def write(self, data):
        pass

    def read(self, size, timeout):
        time.sleep(timeout)
        return b""

    def drain(self):
        return 0

    def close(self):
        pass


def test_client_silent_device_real_time():
    client = LinkClient(SilentRealTransport(), timeout=0.02, retries=3)
    budget = 4 * attempt_budget(client, 13, 9 + 4 + 4) + backoff_total(3)
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout):
        client.read(0, 4)
    assert time.monotonic() - t0 < budget + 0.2


def test_client_garbage_is_a_link_error():
    rng = random.Random(5)
    transport = ScriptedTransport(lambda req: rng.randbytes(40) + b"\x5A" + rng.randbytes(20))
    client = client_for(transport, retries=3)
    with pytest.raises(LinkError, match="line noise or a wrong baud rate"):
        client.read(0, 4)
    assert client.stats.bad_frames > 0 and client.stats.timeouts == 4


def test_client_dead_transport_stops_retrying():
    class Dead(ScriptedTransport):
        def check_alive(self):
            raise TransportError("peer gone")
    transport = Dead(lambda req: b"")
    with pytest.raises(TransportError):
        client_for(transport).nop()
    assert len(transport.requests) == 1


def test_client_discards_stale_and_corrupted_responses():
    def responder(req):
        seq = req[2]
        good = encode_response(Status.OK, seq, b"\x10\x20\x30\x40")
        stale = encode_response(Status.OK, (seq - 1) & 0xFF, b"\x00" * 4)        # wrong seq
        short = encode_response(Status.OK, seq, b"\x00" * 8)                     # wrong length
        bad_data = bytearray(good)
        bad_data[10] ^= 0xFF                                                     # data CRC fails
        bad_hdr = bytearray(good)
        bad_hdr[3] ^= 0x01                                                       # header CRC fails
        return b"\x5A\x00junk" + stale + short + bytes(bad_hdr) + bytes(bad_data) + good
    transport = ScriptedTransport(responder)
    client = client_for(transport)
    assert client.read(0x40, 4) == b"\x10\x20\x30\x40"
    assert client.stats.retries == 0 and client.stats.bad_frames >= 5


def test_client_first_attempt_corrupt_then_good():
    calls = []

    def responder(req):
        calls.append(req)
        frame = encode_response(Status.OK, req[2], b"\x01\x02\x03\x04")
        return frame[:-1] + b"\x00" if len(calls) == 1 else frame
    transport = ScriptedTransport(responder)
    client = client_for(transport)
    assert client.read(0, 4) == b"\x01\x02\x03\x04"
    assert client.stats.retries == 1 and client.stats.bad_frames == 1 and client.stats.timeouts == 1


def test_client_avoids_a_write_taken_for_a_retry():
    """The same WRITE (seq, address, data) 256 transactions later must still be executed."""
    model, transport, client = clean_link()
    client.write(0x500, b"\xC3" * 8)
    for _ in range(255):
        client.read(0x600, 4)
    model.regions[0].data[0x500:0x508] = bytes(8)   # the device changed the memory meanwhile
    client.write(0x500, b"\xC3" * 8)                # same seq (256 later), same everything
    assert bytes(model.regions[0].data[0x500:0x508]) == b"\xC3" * 8
    assert model.writes_executed == 2


# -- the client and the model over a faulty line ---------------------------------------------------------

def test_acceptance_1e5_transactions_through_faults():
    """10⁵ random reads and writes with bit flips, drops and duplications at 1e-3 per byte each way.

    At 3e-3 faults per byte a frame of n bytes gets through with probability 0.997^n: a 4 KiB frame almost
    never does (≈ 5e-6), so the client's chunks are capped at 256 bytes (a 256-byte attempt, 282 bytes on
    the wire, succeeds with p ≈ 0.43) and given 40 retries: the chance that any of the ~1.1e5 chunks
    exhausts them is ≈ 1e4 · 0.57^41 ≈ 1e-6.
    """
    n_transactions = 100_000
    model = make_model()
    transport = FaultyTransport(model, flip=1e-3, drop=1e-3, dup=1e-3, seed=2024)
    client = client_for(transport, max_transfer=256, retries=40)
    rng = random.Random(99)
    shadow = bytearray(RAM_SIZE)
    ram = model.regions[0]
    t0 = time.monotonic()
    for _ in range(n_transactions):
        if rng.random() < 0.005:
            n = 4096
        else:
            n = rng.randrange(1, 65) * 4
        addr = rng.randrange(0, (RAM_SIZE - n) // 4 + 1) * 4
        if rng.random() < 0.5:
            data = rng.randbytes(n)
            client.write(addr, data)
            shadow[addr:addr + n] = data
        else:
            got = client.read(addr, n)
            assert got == shadow[addr:addr + n], f"silent corruption reading {n} bytes at 0x{addr:x}"
    elapsed = time.monotonic() - t0
    assert bytes(ram.data) == bytes(shadow)
    s = client.stats
    print(f"\n{n_transactions} transactions in {elapsed:.1f} s: {s}; efficiency {s.efficiency:.3f}; "
          f"faults h2d {transport.h2d.flips}/{transport.h2d.drops}/{transport.h2d.dups}, "
          f"d2h {transport.d2h.flips}/{transport.d2h.drops}/{transport.d2h.dups}; "
          f"device header_errors {model.header_errors}, payload_crc_errors {model.payload_crc_errors}, "
          f"resyncs {model.resyncs}, duplicate_writes {model.duplicate_writes}")
    assert s.retries > 0 and s.bad_frames > 0 and s.timeouts > 0 and s.crc_error_status > 0
    assert model.header_errors > 0 and model.resyncs > 0 and model.payload_crc_errors > 0
    assert model.duplicate_writes > 0        # responses to executed writes were lost, and retried safely
    for inj in (transport.h2d, transport.d2h):
        assert inj.flips > 0 and inj.drops > 0 and inj.dups > 0


@pytest.mark.parametrize("seed", [1, 2])
def test_high_error_rate_never_lies_or_hangs(seed):
    """At 3e-2 faults per byte many transactions fail, but only with a named error, within the budget."""
    model = make_model()
    ram = model.regions[0]
    transport = FaultyTransport(model, flip=1e-2, drop=1e-2, dup=1e-2, seed=seed)
    client = client_for(transport, max_transfer=64, retries=10)
    rng = random.Random(seed)
    shadow = bytearray(RAM_SIZE)
    outcomes = {"ok": 0, LinkError: 0, DeviceTimeout: 0}
    for _ in range(3000):
        n = rng.randrange(1, 33) * 4 if rng.random() < 0.95 else 1024
        addr = rng.randrange(0, (RAM_SIZE - n) // 4 + 1) * 4
        chunks = -(-n // 64)
        request_time = 2 * (REQUEST_HEADER_BYTES + 64 + 4) * 10 / transport.baud  # duplicates included
        budget = chunks * (11 * (request_time + attempt_budget(client, REQUEST_HEADER_BYTES + 64 + 4,
                                                               RESPONSE_HEADER_BYTES + 64 + 4))
                           + backoff_total(10))
        start = transport.now
        try:
            if rng.random() < 0.5:
                data = rng.randbytes(n)
                old = bytes(shadow[addr:addr + n])
                try:
                    client.write(addr, data)
                    shadow[addr:addr + n] = data
                except (LinkError, DeviceTimeout):
                    # Each chunk was written entirely or not at all.
                    actual = bytes(ram.data[addr:addr + n])
                    for c in range(0, n, 64):
                        assert actual[c:c + 64] in (old[c:c + 64], data[c:c + 64])
                    shadow[addr:addr + n] = actual
                    raise
            else:
                assert client.read(addr, n) == shadow[addr:addr + n]
            outcomes["ok"] += 1
        except (LinkError, DeviceTimeout) as exc:
            outcomes[type(exc)] += 1
        assert transport.now - start <= budget
    assert bytes(ram.data) == bytes(shadow)
    assert outcomes["ok"] > 0 and outcomes[LinkError] + outcomes[DeviceTimeout] > 0
