"""The emulator: a bit-exact Python/numpy model of the whole device behind an in-process transport.

`tensornic.open("emulator")` gives a `Device` on `EmulatorTransport(EmulatedDevice(config))`: the same
memory map and ID ROM (from rtl/memory_map.py), the same link rules (host/link_model.py, checked byte for
byte against the gateware bridge in sim/test_bridge.py), the same registers with the same write ranges.
Engines add their models here as they land, so everything runs with no simulator at all: the contraction
engine's registers and queue (host/engine_emulator.py) execute descriptors with the golden model.

What it does not model: UART timing and its error counters (always 0); the cycle counter follows wall time
at the configured clock.
"""

import time

import numpy as np

from .link_model import LinkModel, MemoryRegion
from .rtl import memory_map as mm
from .rtl.link_format import RESPONSE_HEADER_BYTES, CRC_BYTES, WORD_BYTES
from .transport import Transport


class RegisterRegion:
    """A register bank with the gateware's rules: read-only registers and out-of-range values ignore
    writes; `readers` supply the values of read-only registers."""

    def __init__(self, region, readers):
        self.name, self.base, self.size, self.read_only = region.name, region.base, region.size, False
        self._registers = region.registers
        self._values = {r.name: r.init for r in region.registers if r.access == "rw"}
        self._readers = readers
        self.on_read = {}

    def value(self, name):
        return self._values[name]

    def read(self, offset, nbytes):
        out = bytearray()
        for reg in self._registers[offset // WORD_BYTES:(offset + nbytes) // WORD_BYTES]:
            if reg.name in self.on_read:
                self.on_read[reg.name]()
            value = self._values[reg.name] if reg.access == "rw" else self._readers[reg.name]()
            out += (value & 0xFFFFFFFF).to_bytes(WORD_BYTES, "little")
        return bytes(out)

    def write(self, offset, data):
        first = offset // WORD_BYTES
        for i, reg in enumerate(self._registers[first:first + len(data) // WORD_BYTES]):
            value = int.from_bytes(data[i * WORD_BYTES:(i + 1) * WORD_BYTES], "little")
            if reg.access == "rw" and reg.accepts(value):
                self._values[reg.name] = value


class EmulatedDevice:
    """The device state: memory map, regions and the link model that answers host frames."""

    def __init__(self, config: mm.SocConfig = mm.SocConfig()):
        self.config = config
        self.memory_map = mm.soc_memory_map(config)
        self._start = time.perf_counter()
        self._cycles_hi = 0
        self.responses = 0
        regions = []
        for region in self.memory_map.regions:
            if region.kind == "rom":
                rom = b"".join(w.to_bytes(WORD_BYTES, "little") for w in self.memory_map.rom_words())
                regions.append(MemoryRegion(region.name, region.base, region.size, read_only=True,
                                            init=rom))
            elif region.kind == "registers":
                bank = RegisterRegion(region, self._readers())
                bank.on_read["cycles_lo"] = self._latch_cycles
                regions.append(bank)
                self.csr = bank
            else:
                regions.append(MemoryRegion(region.name, region.base, region.size, region.read_only))
        self.regions = {r.name: r for r in regions}
        if "engine" in self.regions:
            from .engine_emulator import EngineRegion
            engine = EngineRegion(self.memory_map.region("engine"), config)
            engine.attach(self.regions["engine_desc"], self.regions["tensor"])
            self.regions["engine"] = engine
            regions = [engine if r.name == "engine" else r for r in regions]
        self.link = LinkModel(regions, max_transfer=config.max_transfer)

    def cycles(self):
        return int((time.perf_counter() - self._start) * self.config.clock_hz)

    def _latch_cycles(self):
        self._latched = self.cycles()

    def _readers(self):
        return {
            "cycles_lo": lambda: self._latched & 0xFFFFFFFF,
            "cycles_hi": lambda: self._latched >> 32,
            "uart_framing_errors": lambda: 0,
            "uart_overruns": lambda: 0,
            "link_requests": lambda: self.responses,
            "link_header_errors": lambda: self.link.header_errors,
            "link_payload_errors": lambda: self.link.payload_crc_errors,
            "link_resyncs": lambda: self.link.resyncs,
        }

    _latched = 0

    def feed(self, data: bytes) -> bytes:
        out = self.link.feed(data)
        pos = 0
        while pos < len(out):        # count the answers, as the gateware's link_requests does
            length = int.from_bytes(out[pos + 3:pos + 5], "little")
            pos += RESPONSE_HEADER_BYTES + (length + CRC_BYTES if length else 0)
            self.responses += 1
        return out


class EmulatorTransport(Transport):
    """An in-process byte channel to an EmulatedDevice; answers arrive at once. A read that finds nothing
    more means the host waited out a timeout: the device, like the gateware, drops a partial frame."""

    def __init__(self, device: EmulatedDevice | None = None):
        self.device = device or EmulatedDevice()
        self.port = "emulator"
        self._rx = bytearray()

    def write(self, data):
        self._rx += self.device.feed(bytes(data))

    def read(self, size, timeout):
        out = bytes(self._rx[:size])
        del self._rx[:size]
        if len(out) < size:
            self.device.link.idle_timeout()
            if not out:
                time.sleep(min(timeout, 0.01))   # nothing will come: don't spin while the host waits
        return out

    def drain(self):
        n = len(self._rx)
        self._rx.clear()
        return n

    def close(self):
        self._rx.clear()


# -- the all-reduce NIC's semantics ---------------------------------------------------------------------------

#: Wire codecs of the ring, by name: each maps an FP32 chunk to what the next node decodes.
CODECS = ("fp32", "bf16", "mxint8")
#: Codecs the emulator also models for comparison but the gateware does not implement: MXINT8 with
#: truncation (floor) instead of rounding, as in Ma et al.'s NIC.
COMPARISON_CODECS = ("mxint8-trunc",)


def codec_round_trip(values, codec, mx_block=32):
    """D(E(values)): what a node receives when its neighbour sends `values` (float32) with `codec`."""
    from . import formats
    if codec == "fp32":
        return values
    if codec == "bf16":
        return formats.bf16_decode(formats.bf16_encode(values))
    if codec == "mxint8":
        return formats.mxint8_decode(*formats.mxint8_encode(values, mx_block), mx_block)
    if codec == "mxint8-trunc":
        return formats.mxint8_decode(*formats.mxint8_encode(values, mx_block, rounding="truncate"), mx_block)
    raise ValueError(f"unknown codec {codec!r}; the NIC's codecs are {', '.join(CODECS)} "
                     f"(and, emulator only, {', '.join(COMPARISON_CODECS)})")


def allreduce(xs, rs_codec="fp32", ag_codec="fp32", mx_block=32):
    """The NIC's ring all-reduce, exactly (docs/allreduce.md): one float32 result per rank, all identical.

    n ranks, node i sends to node (i+1) mod n. The vectors are zero-padded to a multiple of n·mx_block and
    cut into n chunks. Reduce-scatter: chunk c starts at node c as its own value; each following node j
    computes p ← fp32_add(D_rs(E_rs(p)), x_j[chunk c]); node c−1 ends with the total T_c. All-gather: every
    node, node c−1 included, sets result[chunk c] = D_ag(E_ag(T_c)). The padding is removed.
    """
    from . import formats
    from .rtl.format_constants import MX_BLOCK_SIZES

    if mx_block not in MX_BLOCK_SIZES:
        raise ValueError(f"mx_block must be one of {MX_BLOCK_SIZES}, not {mx_block!r}")
    for name, codec in (("rs_codec", rs_codec), ("ag_codec", ag_codec)):
        if codec not in CODECS + COMPARISON_CODECS:
            raise ValueError(f"{name}={codec!r}: the NIC's codecs are {', '.join(CODECS)} "
                             f"(and, emulator only, {', '.join(COMPARISON_CODECS)})")
    xs = list(xs)
    if not xs:
        raise ValueError("allreduce needs at least one rank's vector")
    for rank, x in enumerate(xs):
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 1:
            raise TypeError(f"rank {rank}: expected a 1-D float32 numpy array, got "
                            f"{getattr(x, 'dtype', type(x).__name__)} with shape {getattr(x, 'shape', '?')}; "
                            "convert with np.asarray(x, dtype=np.float32).ravel()")
    length = xs[0].size
    if any(x.size != length for x in xs):
        raise ValueError(f"every rank must contribute the same length; got {[x.size for x in xs]}")
    n = len(xs)
    unit = n * mx_block
    padded = -(-length // unit) * unit
    chunk = padded // n
    data = np.zeros((n, padded), dtype=np.float32)
    for rank, x in enumerate(xs):
        data[rank, :length] = x
    result = np.empty(padded, dtype=np.float32)
    for c in range(n):
        span = slice(c * chunk, (c + 1) * chunk)
        partial = data[c, span]
        for step in range(1, n):
            j = (c + step) % n
            partial = formats.fp32_add(codec_round_trip(partial, rs_codec, mx_block), data[j, span])
        result[span] = codec_round_trip(partial, ag_codec, mx_block)
    return [result[:length].copy() for _ in range(n)]
