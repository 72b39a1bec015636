"""A pure-Python model of the device side of the host link (the bridge in `rtl/bridge.py`).

This is the reference behaviour the gateware must match, and the core of an emulated device. It follows
the device rules of docs/host-link.md to the byte:

* **Hunting.** Bytes are discarded until `SYNC_REQUEST` (0xA5); the 12 bytes after it are the header.
* **Header CRC.** A header whose CRC does not match is dropped silently (no answer, no counter but
  `header_errors`). Its 12 bytes are consumed; hunting resumes with the byte after them. (A streaming
  parser: bytes already taken into a header are never rescanned, which is what the gateware does.)
* **Validation before effect.** A request with a good header is checked in this order, the first failing
  check giving the status:

  1. opcode   — not NOP/READ/WRITE                          → BAD_OPCODE    (answered at once, no payload)
  2. alignment — address % 4 != 0                           → BAD_ALIGNMENT
  3. length   — 0, > max_transfer, or length % 4 != 0       → BAD_LENGTH
  4. range    — [addr, addr+length) not inside one region   → BAD_ADDRESS
  5. read-only — WRITE to a read-only region                → READ_ONLY

  NOP skips checks 2–5 (its address and length are ignored). A rejected READ is answered at once. A
  rejected WRITE still consumes exactly `length + 4` bytes (payload and payload CRC, unchecked), then is
  answered with the error status; a WRITE of length 0 carries no payload and no CRC and is answered at once.
* **Buffered writes.** An accepted WRITE's payload is committed only after its payload CRC matched;
  otherwise the answer is CRC_ERROR and nothing is written.
* **Executed once.** The device remembers (header CRC, payload CRC, status) of the last WRITE it executed.
  A WRITE whose two CRCs equal the remembered ones (checked after the payload CRC matched) is answered
  with the remembered status without being executed again. NOP forgets the remembered WRITE. A WRITE
  the target refused with BUSY was not executed and is not remembered. READs are simply executed again.
* **Idle resync.** `idle_timeout()` is what the device does after `resync_timeout` of silence: a partial
  frame is dropped and the parser hunts again.
* **One at a time.** Every complete request is answered before the next byte is parsed; `feed()` returns
  the answers to the requests its bytes completed.

`feed()` keeps only the current partial frame between calls, so feeding a stream in one call or byte by
byte gives the same answers (a property the tests check).
"""

from .rtl.link_format import (
    CRC_BYTES,
    LENGTH_FIELD_MAX,
    REQUEST_FIELDS,
    REQUEST_HEADER_BYTES,
    SYNC_REQUEST,
    WORD_BYTES,
    Op,
    Status,
    crc32,
    encode_response,
)

__all__ = ["LinkModel", "MemoryRegion", "RegionBusy"]

_HUNT = 0
_HEADER = 1
_PAYLOAD = 2

_OPS = frozenset(int(op) for op in Op)
_unpack_fields = REQUEST_FIELDS.unpack_from
_FIELDS_END = 1 + REQUEST_FIELDS.size  # offset of the header CRC within the frame (9)


class RegionBusy(Exception):
    """Raised by a region's read() or write() when the target cannot take the access now (→ BUSY)."""


class MemoryRegion:
    """A plain memory region backed by a bytearray (RAM, or a ROM if `read_only`)."""

    def __init__(self, name, base, size, read_only=False, init=None):
        if base % WORD_BYTES or size % WORD_BYTES or size <= 0:
            raise ValueError(f"region {name!r}: base 0x{base:x} and size {size} must be positive "
                             f"multiples of {WORD_BYTES}")
        self.name = name
        self.base = base
        self.size = size
        self.read_only = read_only
        self.data = bytearray(size)
        if init is not None:
            init = bytes(init)
            if len(init) > size:
                raise ValueError(f"region {name!r}: init is {len(init)} bytes, the region only {size}")
            self.data[:len(init)] = init

    def read(self, offset, nbytes):
        return bytes(self.data[offset:offset + nbytes])

    def write(self, offset, data):
        self.data[offset:offset + len(data)] = data

    def __repr__(self):
        ro = ", read_only" if self.read_only else ""
        return f"MemoryRegion({self.name!r}, 0x{self.base:08x}, {self.size}{ro})"


class LinkModel:
    """The device end of the link: feed it host bytes, get back the device's answers.

    `regions`: objects with `name`, `base`, `size`, `read_only`, `read(offset, nbytes) -> bytes` and
    `write(offset, data)`; they must not overlap. `max_transfer`: the largest READ/WRITE length accepted.

    Counters: `requests` (headers with a good CRC), `header_errors`, `payload_crc_errors`, `resyncs`
    (partial frames dropped by `idle_timeout()`), `writes_executed` (WRITEs that reached a region),
    `duplicate_writes` (retried WRITEs answered from memory), `discarded_bytes` (skipped while hunting).
    """

    def __init__(self, regions, max_transfer=4096):
        if not (WORD_BYTES <= max_transfer <= LENGTH_FIELD_MAX) or max_transfer % WORD_BYTES:
            raise ValueError(f"max_transfer must be a multiple of {WORD_BYTES} in "
                             f"[{WORD_BYTES}, {LENGTH_FIELD_MAX}], not {max_transfer}")
        self.max_transfer = max_transfer
        self.regions = sorted(regions, key=lambda r: r.base)
        for a, b in zip(self.regions, self.regions[1:]):
            if a.base + a.size > b.base:
                raise ValueError(f"regions {a.name!r} and {b.name!r} overlap")
        self._buf = bytearray()  # the current partial frame (starting with its sync byte), else empty
        self._state = _HUNT
        self._frame_bytes = 0    # total bytes of the frame being collected (header, or header+payload+crc)
        self._pending = None     # accepted WRITE header waiting for its payload: (status, seq, addr, ...)
        self._remembered = None  # (header CRC, payload CRC, status) of the last executed WRITE
        self.requests = 0
        self.header_errors = 0
        self.payload_crc_errors = 0
        self.resyncs = 0
        self.writes_executed = 0
        self.duplicate_writes = 0
        self.discarded_bytes = 0

    # -- the byte stream ---------------------------------------------------------------------------------

    def feed(self, data):
        """Consume bytes from the host; return the response bytes they caused (b"" if none)."""
        buf = self._buf
        buf += data
        out = []
        pos = 0
        end = len(buf)
        while pos < end:
            state = self._state
            if state == _HUNT:
                i = buf.find(SYNC_REQUEST, pos)
                if i < 0:
                    self.discarded_bytes += end - pos
                    pos = end
                    break
                self.discarded_bytes += i - pos
                pos = i
                self._state = _HEADER
                self._frame_bytes = REQUEST_HEADER_BYTES
            elif end - pos < self._frame_bytes:
                break  # wait for the rest of the frame
            elif state == _HEADER:
                pos = self._header(buf, pos, out)
            else:
                pos = self._payload(buf, pos, out)
        del buf[:pos]
        return b"".join(out)

    def idle_timeout(self):
        """The link was silent for `resync_timeout`: drop any partial frame and hunt again."""
        if self._state != _HUNT or self._buf:
            self.resyncs += 1
        self._buf.clear()
        self._state = _HUNT
        self._pending = None

    @property
    def idle(self):
        """True when the parser holds no partial frame (an idle_timeout() would change nothing)."""
        return self._state == _HUNT and not self._buf

    # -- frame handling ----------------------------------------------------------------------------------

    def _header(self, buf, pos, out):
        """A whole header is at buf[pos:]; act on it and return the position after what it consumed."""
        header_crc = int.from_bytes(buf[pos + _FIELDS_END:pos + REQUEST_HEADER_BYTES], "little")
        if crc32(buf[pos + 1:pos + _FIELDS_END]) != header_crc:
            self.header_errors += 1
            self._state = _HUNT
            return pos + REQUEST_HEADER_BYTES
        self.requests += 1
        op, seq, addr, length = _unpack_fields(buf, pos + 1)
        status, region = self._validate(op, addr, length)
        if op == Op.WRITE and length > 0:
            self._pending = (status, seq, addr, length, region, header_crc)
            self._state = _PAYLOAD
            self._frame_bytes = REQUEST_HEADER_BYTES + length + CRC_BYTES
            return pos
        self._state = _HUNT
        if status != Status.OK:
            out.append(encode_response(status, seq))
        elif op == Op.NOP:
            self._remembered = None
            out.append(encode_response(Status.OK, seq))
        else:  # READ
            try:
                data = region.read(addr - region.base, length)
            except RegionBusy:
                out.append(encode_response(Status.BUSY, seq))
            else:
                out.append(encode_response(Status.OK, seq, data))
        return pos + REQUEST_HEADER_BYTES

    def _payload(self, buf, pos, out):
        """A whole WRITE (header, payload, payload CRC) is at buf[pos:]; answer it."""
        status, seq, addr, length, region, header_crc = self._pending
        self._pending = None
        self._state = _HUNT
        end = pos + REQUEST_HEADER_BYTES + length
        if status == Status.OK:
            payload = bytes(buf[pos + REQUEST_HEADER_BYTES:end])
            payload_crc = int.from_bytes(buf[end:end + CRC_BYTES], "little")
            if crc32(payload) != payload_crc:
                self.payload_crc_errors += 1
                status = Status.CRC_ERROR
            elif self._remembered is not None and self._remembered[:2] == (header_crc, payload_crc):
                self.duplicate_writes += 1
                status = self._remembered[2]
            else:
                try:
                    region.write(addr - region.base, payload)
                except RegionBusy:
                    status = Status.BUSY
                else:
                    self.writes_executed += 1
                    self._remembered = (header_crc, payload_crc, status)
        out.append(encode_response(status, seq))
        return end + CRC_BYTES

    def _validate(self, op, addr, length):
        """Return (status, region) for a request header; the order of the checks is the documented one."""
        if op not in _OPS:
            return Status.BAD_OPCODE, None
        if op == Op.NOP:
            return Status.OK, None
        if addr % WORD_BYTES:
            return Status.BAD_ALIGNMENT, None
        if length == 0 or length > self.max_transfer or length % WORD_BYTES:
            return Status.BAD_LENGTH, None
        region = self.region_at(addr)
        if region is None or addr + length > region.base + region.size:
            return Status.BAD_ADDRESS, None
        if op == Op.WRITE and region.read_only:
            return Status.READ_ONLY, region
        return Status.OK, region

    def region_at(self, addr):
        """The region containing byte address `addr`, or None."""
        for region in self.regions:
            if region.base <= addr < region.base + region.size:
                return region
        return None
