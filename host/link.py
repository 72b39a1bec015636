"""The host-link protocol client: framed, CRC-checked, retried reads and writes over a byte transport.

Wire format and rules: docs/host-link.md. One request frame, one response frame; the client drains stale
input before each attempt, hunts for the response sync, accepts only a response whose header CRC, sequence
number, length and data CRC are right, and retries (same sequence number) after a backoff on timeouts,
bad frames and the CRC_ERROR / BUSY statuses. Other error statuses raise a `DeviceError` subclass at once.

Reads and writes take word-aligned addresses and lengths (multiples of `link_format.WORD_BYTES`); the
Device layer above handles unaligned access.
"""

import dataclasses
import operator
import time

from .errors import (
    BadAddress,
    BadAlignment,
    BadLength,
    BadOpcode,
    DeviceError,
    DeviceTimeout,
    LinkError,
    ReadOnly,
)
from .rtl.link_format import (
    CRC_BYTES,
    LENGTH_FIELD_MAX,
    REQUEST_HEADER_BYTES,
    RESPONSE_FIELDS,
    RESPONSE_HEADER_BYTES,
    SYNC_RESPONSE,
    WORD_BYTES,
    Op,
    Status,
    crc32,
    encode_request,
)

__all__ = ["LinkClient", "LinkStats"]

_BACKOFF_FIRST = 0.001
_BACKOFF_CAP = 0.100
_ADDR_LIMIT = 1 << 32
_RESP_FIELDS_END = 1 + RESPONSE_FIELDS.size  # offset of the response header CRC (5)
_unpack_response = RESPONSE_FIELDS.unpack_from

_ERRORS = {
    Status.BAD_OPCODE: (BadOpcode, "the device does not know this opcode: the host package and the "
                        "bitstream are out of step; rebuild/reprogram the bitstream from this checkout"),
    Status.BAD_ADDRESS: (BadAddress, "the range is not inside one region of the device's memory map; "
                         "check the address and length against the register map"),
    Status.BAD_LENGTH: (BadLength, "the length is zero, above the device's max_transfer or not a "
                        "multiple of 4; lower LinkClient.max_transfer to the device's value"),
    Status.BAD_ALIGNMENT: (BadAlignment, "the address is not a multiple of 4; use word-aligned "
                           "addresses (the Device layer does unaligned access)"),
    Status.READ_ONLY: (ReadOnly, "the region is read-only (the ID ROM); do not write to it"),
}


@dataclasses.dataclass
class LinkStats:
    """Counters of a LinkClient (all cumulative)."""

    #: Protocol transactions started (one per chunk, NOPs included).
    transactions: int = 0
    #: Attempts beyond the first of a transaction.
    retries: int = 0
    #: Attempts that ended without an acceptable response before their deadline.
    timeouts: int = 0
    #: Candidate response frames rejected (bad header CRC, sequence, length or data CRC), plus runs of
    #: bytes that held no sync byte at all.
    bad_frames: int = 0
    #: Valid responses with status CRC_ERROR (the request was corrupted on its way to the device).
    crc_error_status: int = 0
    #: Valid responses with status BUSY.
    busy_status: int = 0
    #: Bytes written to the transport.
    bytes_sent: int = 0
    #: Bytes read from the transport (garbage and drained bytes included).
    bytes_received: int = 0
    #: Payload bytes of completed READs and WRITEs.
    payload_bytes: int = 0

    @property
    def efficiency(self):
        """Payload bytes per byte on the wire (both directions), 0.0 before any traffic."""
        wire = self.bytes_sent + self.bytes_received
        return self.payload_bytes / wire if wire else 0.0

    def reset(self):
        for field in dataclasses.fields(self):
            setattr(self, field.name, 0)


class _Attempt:
    """What one attempt of a transaction saw, for the final diagnosis."""

    __slots__ = ("status", "received", "bad")

    def __init__(self):
        self.status = None   # status of an acceptable response, or None
        self.received = 0    # bytes that arrived
        self.bad = 0         # rejected frames / garbage runs


class LinkClient:
    """Protocol client of the host link.

    `transport`: a `tensornic.transport.Transport`. `timeout`: base response timeout of one attempt in
    seconds; each attempt also gets 1.5 × the time the request and the expected response take on the line
    (`seconds_per_byte`, by default the transport's own, which follows its baud rate). `retries`: attempts
    after the first. `max_transfer`: largest chunk of one READ/WRITE (set it to the device's own value).
    `progress(done_bytes, total_bytes)`: called after each chunk. `sleep` and `clock` are the backoff
    sleep and the monotonic clock (injectable for virtual-time tests).
    """

    def __init__(self, transport, *, timeout=0.25, retries=10, max_transfer=4096, seconds_per_byte=None,
                 progress=None, sleep=time.sleep, clock=time.monotonic):
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.max_transfer = max_transfer
        self._seconds_per_byte = seconds_per_byte
        self.progress = progress
        self.stats = LinkStats()
        self._sleep = sleep
        self._clock = clock
        self._seq = 0
        # (header CRC, payload CRC) of WRITEs the device may remember as its last executed one. A new
        # WRITE with the same pair (same seq, address and data 256·k transactions later, with no other
        # write executed between) would be taken for a retry and dropped, so a NOP clears it first.
        self._maybe_remembered = set()

    @property
    def seconds_per_byte(self):
        """Line time per byte: the fixed value given, else the transport's current one (it follows set_baud)."""
        if self._seconds_per_byte is not None:
            return self._seconds_per_byte
        return getattr(self.transport, "seconds_per_byte", 0.0)

    # -- public API --------------------------------------------------------------------------------------

    def nop(self):
        """Send a NOP (the device answers OK and forgets its remembered write)."""
        self._transaction(Op.NOP, 0, 0)
        self._maybe_remembered.clear()

    def read(self, addr, nbytes):
        """Read `nbytes` bytes at `addr` (both multiples of 4), in chunks of at most max_transfer."""
        addr, nbytes = self._check_args("read", addr, nbytes)
        chunk = self._chunk_size()
        out = bytearray(nbytes)
        done = 0
        while done < nbytes:
            n = min(chunk, nbytes - done)
            out[done:done + n] = self._transaction(Op.READ, addr + done, n)
            done += n
            if self.progress is not None:
                self.progress(done, nbytes)
        return bytes(out)

    def write(self, addr, data):
        """Write `data` (bytes-like or a numpy array; length a multiple of 4) at `addr` (a multiple of 4)."""
        view = _byte_view(data)
        total = len(view)
        addr, total = self._check_args("write", addr, total)
        chunk = self._chunk_size()
        done = 0
        while done < total:
            n = min(chunk, total - done)
            self._transaction(Op.WRITE, addr + done, n, view[done:done + n])
            done += n
            if self.progress is not None:
                self.progress(done, total)

    # -- argument checks ---------------------------------------------------------------------------------

    @staticmethod
    def _check_args(what, addr, nbytes):
        addr = operator.index(addr)
        nbytes = operator.index(nbytes)
        if addr < 0 or nbytes < 0 or addr + nbytes > _ADDR_LIMIT:
            raise ValueError(f"{what} of {nbytes} bytes at 0x{addr:x}: the range must lie inside the "
                             "32-bit address space")
        if addr % WORD_BYTES or nbytes % WORD_BYTES:
            raise ValueError(f"{what} of {nbytes} bytes at 0x{addr:x}: the link moves whole "
                             f"{WORD_BYTES}-byte words, so address and length must be multiples of "
                             f"{WORD_BYTES}; use the Device layer for unaligned access")
        return addr, nbytes

    def _chunk_size(self):
        chunk = min(int(self.max_transfer), LENGTH_FIELD_MAX)
        chunk -= chunk % WORD_BYTES
        if chunk < WORD_BYTES:
            raise ValueError(f"max_transfer is {self.max_transfer}: it must be at least {WORD_BYTES}")
        return chunk

    # -- one transaction ---------------------------------------------------------------------------------

    def _transaction(self, op, addr, length, payload=None):
        """Run one request/response exchange with retries; return the READ data (else b"")."""
        stats = self.stats
        seq = self._seq
        request = encode_request(op, seq, addr, payload if payload is not None else b"",
                                 length=length if op == Op.READ else None)
        if op == Op.WRITE:
            key = (request[REQUEST_HEADER_BYTES - CRC_BYTES:REQUEST_HEADER_BYTES], request[-CRC_BYTES:])
            if key in self._maybe_remembered:
                self.nop()  # make the device forget it, or this new WRITE would pass for a retry
                seq = self._seq
                request = encode_request(op, seq, addr, payload, length=None)
                key = (request[REQUEST_HEADER_BYTES - CRC_BYTES:REQUEST_HEADER_BYTES],
                       request[-CRC_BYTES:])
            self._maybe_remembered.add(key)
        self._seq = (seq + 1) & 0xFF
        stats.transactions += 1

        expected_len = length if op == Op.READ else 0
        response_bytes = RESPONSE_HEADER_BYTES + (expected_len + CRC_BYTES if expected_len else 0)
        attempt_timeout = (self.timeout
                           + (len(request) + response_bytes) * self.seconds_per_byte * 1.5)
        transport = self.transport
        attempts = []
        started = self._clock()
        backoff = _BACKOFF_FIRST
        for attempt_no in range(self.retries + 1):
            if attempt_no:
                stats.retries += 1
            att = _Attempt()
            attempts.append(att)
            drained = transport.drain()
            stats.bytes_received += drained
            if attempt_no:  # late bytes of the previous attempt
                attempts[-2].received += drained
            transport.write(request)
            stats.bytes_sent += len(request)
            result = self._receive(seq, expected_len, attempt_timeout, att)
            if result is not None:
                status, data = result
                if status == Status.OK:
                    if op == Op.WRITE:
                        self._maybe_remembered = {key}
                    if op != Op.NOP:
                        stats.payload_bytes += length
                    return data
                if status == Status.CRC_ERROR:
                    stats.crc_error_status += 1
                elif status == Status.BUSY:
                    stats.busy_status += 1
                else:
                    raise self._device_error(op, addr, length, status)
            else:
                stats.timeouts += 1
            transport.check_alive()  # a dead peer is a TransportError, not a timeout
            if attempt_no == self.retries:
                break
            self._sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_CAP)
        raise self._exhausted(op, addr, length, attempts, self._clock() - started)

    def _receive(self, seq, expected_len, attempt_timeout, att):
        """Read until an acceptable response or the deadline; return (status, data) or None."""
        transport = self.transport
        stats = self.stats
        clock = self._clock
        deadline = clock() + attempt_timeout
        buf = b""
        while True:
            # Parse what we have; `need` = bytes still missing to judge the candidate frame at buf[0].
            while True:
                if not buf:
                    need = RESPONSE_HEADER_BYTES
                    break
                if buf[0] != SYNC_RESPONSE:  # bytes before any sync: one bad run, however long
                    stats.bad_frames += 1
                    att.bad += 1
                    buf = _from_next_sync(buf, 0)
                    continue
                have = len(buf)
                if have < RESPONSE_HEADER_BYTES:
                    need = RESPONSE_HEADER_BYTES - have
                    break
                status, rseq, rlen = _unpack_response(buf, 1)
                if (crc32(buf[1:_RESP_FIELDS_END])
                        != int.from_bytes(buf[_RESP_FIELDS_END:RESPONSE_HEADER_BYTES], "little")
                        or rseq != seq
                        or rlen != (expected_len if status == Status.OK else 0)):
                    stats.bad_frames += 1
                    att.bad += 1
                    buf = _from_next_sync(buf, 1)  # hunt again from the byte after this sync
                    continue
                if not rlen:
                    att.status = status
                    return status, b""
                total = RESPONSE_HEADER_BYTES + rlen + CRC_BYTES
                if have < total:
                    need = total - have
                    break
                data = buf[RESPONSE_HEADER_BYTES:RESPONSE_HEADER_BYTES + rlen]
                if crc32(data) != int.from_bytes(buf[total - CRC_BYTES:total], "little"):
                    stats.bad_frames += 1
                    att.bad += 1
                    buf = _from_next_sync(buf, 1)
                    continue
                att.status = status
                return status, data
            remaining = deadline - clock()
            if remaining <= 0:
                return None
            chunk = transport.read(need, remaining)
            if chunk:
                n = len(chunk)
                stats.bytes_received += n
                att.received += n
                buf = buf + chunk if buf else bytes(chunk)

    # -- errors ------------------------------------------------------------------------------------------

    @staticmethod
    def _describe(op, addr, length):
        if op == Op.NOP:
            return "NOP"
        return f"{Op(op).name} of {length} bytes at 0x{addr:08x}"

    def _device_error(self, op, addr, length, status):
        cls, hint = _ERRORS.get(status, (DeviceError, "an unknown status: host and bitstream out of step"))
        try:
            status = Status(status)
            name = status.name
        except ValueError:
            name = f"status {status}"
        return cls(f"{self._describe(op, addr, length)} rejected by the device with {name}: {hint}",
                   status=status)

    def _exhausted(self, op, addr, length, attempts, elapsed):
        what = self._describe(op, addr, length)
        n = len(attempts)
        received = sum(a.received for a in attempts)
        statuses = [a.status for a in attempts if a.status is not None]
        if statuses and statuses[-1] == Status.BUSY:
            return DeviceError(f"{what}: the device answered BUSY to all of the last attempts "
                               f"({statuses.count(Status.BUSY)} of {n} in {elapsed:.2f} s); the target "
                               "is stuck: check what the device is doing, or retry later",
                               status=Status.BUSY)
        if statuses:
            crc = statuses.count(Status.CRC_ERROR)
            return LinkError(f"{what} failed after {n} attempts in {elapsed:.2f} s: the device reported "
                             f"{crc} payload CRC errors and no attempt got through: line noise on the "
                             "host→device direction or a wrong baud rate; check the cable and lower the "
                             "baud rate")
        if not received:
            return DeviceTimeout(f"{what}: no response from the device in {n} attempts over "
                                 f"{elapsed:.2f} s: check the port, the baud rate (both ends must agree), "
                                 "that the board is programmed with the tensornic bitstream or that the "
                                 "simulator is alive")
        bad = sum(a.bad for a in attempts)
        return LinkError(f"{what} failed after {n} attempts in {elapsed:.2f} s: only corrupted frames "
                         f"arrived ({received} bytes, {bad} rejected frames): line noise or a wrong baud "
                         "rate; check the cable and that host and device use the same baud rate")


def _from_next_sync(buf, start):
    """`buf` from its first response sync byte at or after `start` (b"" if there is none)."""
    i = buf.find(SYNC_RESPONSE, start)
    return buf[i:] if i >= 0 else b""


def _byte_view(data):
    """A flat byte view of bytes-like data or a numpy array (copied to C order if it is not)."""
    if isinstance(data, (bytes, bytearray)):
        return memoryview(data)
    try:
        view = data if isinstance(data, memoryview) else memoryview(data)
        if view.c_contiguous:
            return view if (view.format, view.ndim) == ("B", 1) else view.cast("B")
    except (TypeError, ValueError):
        pass
    tobytes = getattr(data, "tobytes", None)
    if tobytes is None:
        raise TypeError(f"write() needs bytes-like data or a numpy array, not {type(data).__name__}")
    return memoryview(tobytes())
