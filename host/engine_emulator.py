"""The contraction engine for the emulator: its register bank in Python, executing descriptors with the
golden model (host/contraction_model.py) the moment they are submitted.

`EngineRegion(region, config)` reads and writes like the emulator's other register regions (byte offsets,
little-endian words); `attach(desc, tensor)` gives it the `engine_desc` and `tensor` memory regions (any
object with a `data` bytearray). Semantics follow the gateware: descriptors run in submission order; a
rejected descriptor sets the error status and halts the queue until `control` bit 0; counters count
useful MACs exactly, and busy cycles as the ideal MACs / (R·C) (the emulator has no timing).
"""

import numpy as np

from . import contraction_model as cm
from .rtl import contraction_format as cf
from .rtl.link_format import WORD_BYTES

__all__ = ["EngineRegion"]

MASK = 0xFFFFFFFF


class EngineRegion:
    def __init__(self, region, config):
        self.name, self.base, self.size, self.read_only = region.name, region.base, region.size, False
        self._registers = region.registers
        self.config = config
        self.desc = self.tensor = None
        self.submitted = self.completed = 0
        self.pending = []
        self.error_code = self.error_index = 0
        self.busy_cycles = self.mac_count = 0
        self._latched = {"busy_cycles_hi": 0, "mac_count_hi": 0}
        self._values = {r.name: r.init for r in region.registers if r.access == "rw"}

    def attach(self, desc, tensor):
        self.desc, self.tensor = desc, tensor

    # -- engine behaviour ------------------------------------------------------------------------------
    def _submit(self):
        if len(self.pending) >= self.config.engine_queue:
            return                                  # the gateware ignores a submit to a full queue
        slot = self.submitted % self.config.engine_queue
        start = slot * cf.DESC_SLOT_WORDS * WORD_BYTES
        words = np.frombuffer(bytes(self.desc.data[start:start + cf.DESC_SLOT_WORDS * WORD_BYTES]), "<u4")
        self.pending.append((self.submitted, cm.Descriptor.from_words(words.tolist(), self.config.engine_loops)))
        self.submitted = (self.submitted + 1) & MASK
        self._run()

    def _run(self):
        width = self.config.engine_width
        while self.pending and not self.error_code:
            seq, desc = self.pending[0]
            code = cm.validate(desc, self.config.tensor_bytes, width)
            if code != cf.EngineStatus.OK:
                self.error_code, self.error_index = int(code), seq
                return
            self.pending.pop(0)
            image = np.frombuffer(self.tensor.data, dtype=np.uint8)
            self.tensor.data[:] = cm.execute(desc, image, width).tobytes()
            m, n, k = desc.shape()
            self.mac_count += m * n * k
            self.busy_cycles += -(-m * n * k // (self.config.engine_rows * self.config.engine_cols))
            self.completed = (self.completed + 1) & MASK

    def _control(self, value):
        if value & cf.CONTROL_RESET:
            self.pending.clear()
            self.error_code = self.error_index = 0
        if value & cf.CONTROL_CLEAR_COUNTERS:
            self.busy_cycles = self.mac_count = 0

    def _read(self, name):
        if name in self._values:
            return self._values[name]
        if name == "status":
            return ((cf.STATUS_BUSY if self.pending else 0) | (cf.STATUS_ERROR if self.error_code else 0) |
                    (cf.STATUS_QUEUE_FULL if len(self.pending) >= self.config.engine_queue else 0))
        if name == "busy_cycles_lo":
            self._latched["busy_cycles_hi"] = (self.busy_cycles >> 32) & MASK
            return self.busy_cycles & MASK
        if name == "mac_count_lo":
            self._latched["mac_count_hi"] = (self.mac_count >> 32) & MASK
            return self.mac_count & MASK
        if name in self._latched:
            return self._latched[name]
        return {"error_code": self.error_code, "error_index": self.error_index, "submitted": self.submitted,
                "completed": self.completed, "queue_count": len(self.pending), "array_cycles": self.busy_cycles,
                "stall_operand": 0, "stall_drain": 0, "stall_bus": 0}[name] & MASK

    # -- region interface ------------------------------------------------------------------------------
    def read(self, offset, nbytes):
        out = bytearray()
        for reg in self._registers[offset // WORD_BYTES:(offset + nbytes) // WORD_BYTES]:
            out += self._read(reg.name).to_bytes(WORD_BYTES, "little")
        return bytes(out)

    def write(self, offset, data):
        first = offset // WORD_BYTES
        for i, reg in enumerate(self._registers[first:first + len(data) // WORD_BYTES]):
            value = int.from_bytes(data[i * WORD_BYTES:(i + 1) * WORD_BYTES], "little")
            if reg.access != "rw":
                continue
            self._values[reg.name] = value
            if reg.name == "submit":
                self._submit()
            elif reg.name == "control":
                self._control(value)
