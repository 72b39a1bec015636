"""The emulator: a bit-exact Python/numpy model of the whole device behind an in-process transport.

`tensornic.open("emulator")` gives a `Device` on `EmulatorTransport(EmulatedDevice(config))`: the same
memory map and ID ROM (from rtl/memory_map.py), the same link rules (host/link_model.py, checked byte for
byte against the gateware bridge in sim/test_bridge.py), the same registers with the same write ranges.
Engines add their models here as they land, so everything runs with no simulator at all.

What it does not model: UART timing and its error counters (always 0); the cycle counter follows wall time
at the configured clock.
"""

import time

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
