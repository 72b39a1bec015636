"""`Engine`: the host driver of the contraction engine on a tensornic Device.

    import tensornic
    from tensornic.engine import Engine
    from tensornic.contraction_model import gemm
    with tensornic.open("sim") as dev:
        eng = Engine(dev)
        eng.write_tensor(0, a)                     # operands live in tensor memory (offsets in bytes)
        eng.write_tensor(65536, b)
        seq = eng.submit(gemm(256, 256, 256, base_a=0, base_b=65536, base_d=131072))
        eng.wait(seq)
        d = eng.read_tensor(131072, "<i4", 256 * 256)
        print(eng.counters())

Descriptors are checked on the host with the golden model's validator first (`submit(check=True)`), so a bad
one raises before anything is sent; with `check=False` the device's own check rejects it and `wait` raises
the same exception. After a rejection the engine halts with the queue intact; `reset()` flushes it.
"""

import time

import numpy as np

from .contraction_model import Descriptor, validate
from .errors import DeviceError, DeviceMismatch, DeviceTimeout
from .rtl import contraction_format as cf
from .rtl.contraction_format import EngineStatus

__all__ = ["Engine", "engine_sim_config", "EngineError", "ZeroExtent", "BadRole", "Misaligned", "StrideOverflow", "OutOfRange",
           "EngineTimeout"]


def engine_sim_config(**overrides):
    """The simulated device's configuration with an engine: 8×8 int8 array, 64×64 tiles, K chunks of 256,
    512 KiB of tensor memory. Open it with `tensornic.open("sim", config=engine_sim_config())`; the first
    open builds its own Verilated harness (about a minute, cached)."""
    import dataclasses
    from .sim.device import SIM_CONFIG
    params = dict(engine_rows=8, engine_cols=8, engine_width=8, engine_loops=8, engine_tile_m=64,
                  engine_tile_n=64, engine_chunk_k=256, engine_queue=4, tensor_bytes=512 * 1024)
    params.update(overrides)
    return dataclasses.replace(SIM_CONFIG, **params)


class EngineError(DeviceError):
    """The engine rejected a descriptor. `code` is the EngineStatus, `index` the descriptor's sequence."""

    def __init__(self, message, code=None, index=None):
        super().__init__(message, status=code)
        self.code = code
        self.index = index


class ZeroExtent(EngineError):
    """A loop has extent 0."""


class BadRole(EngineError):
    """A loop with extent > 1 has a role other than K, M or N."""


class Misaligned(EngineError):
    """A base address is not a multiple of its operand's element size."""


class StrideOverflow(EngineError):
    """A stride of a loop with extent > 1 is beyond the tensor memory's address width."""


class OutOfRange(EngineError):
    """An element of A, B, C or D would lie outside tensor memory. `operand` names it."""

    def __init__(self, message, code=None, index=None):
        super().__init__(message, code, index)
        self.operand = code.name[0].lower() if code is not None else None


class EngineTimeout(DeviceTimeout):
    """The engine did not finish within the timeout (it is still busy; `Engine.reset()` aborts it)."""


_ERRORS = {
    EngineStatus.ZERO_EXTENT: (ZeroExtent, "a loop has extent 0"),
    EngineStatus.BAD_ROLE: (BadRole, "a loop with extent > 1 has role 3 (roles are K=0, M=1, N=2)"),
    EngineStatus.MISALIGNED: (Misaligned, "a base address is not aligned to its element size"),
    EngineStatus.STRIDE_RANGE: (StrideOverflow, "a stride overflows the tensor memory's address width"),
    EngineStatus.A_RANGE: (OutOfRange, "operand A reaches outside tensor memory"),
    EngineStatus.B_RANGE: (OutOfRange, "operand B reaches outside tensor memory"),
    EngineStatus.C_RANGE: (OutOfRange, "operand C reaches outside tensor memory"),
    EngineStatus.D_RANGE: (OutOfRange, "operand D reaches outside tensor memory"),
}


def engine_error(code, index=None, where="the engine"):
    code = EngineStatus(code)
    cls, text = _ERRORS.get(code, (EngineError, "unknown error"))
    seq = f" (descriptor #{index})" if index is not None else ""
    return cls(f"{where} rejected the descriptor{seq}: {code.name}: {text}. Nothing was written.",
               code, index)


class Engine:
    def __init__(self, dev):
        config = dev.config
        if not getattr(config, "has_engine", False):
            raise DeviceMismatch(f"{dev!r} has no contraction engine (its configuration reports "
                                 f"engine_rows=0); use a bitstream or simulator built with one")
        self.dev = dev
        self.rows, self.cols = config.engine_rows, config.engine_cols
        self.width, self.loops, self.queue = config.engine_width, config.engine_loops, config.engine_queue
        self.tile_m, self.tile_n, self.chunk_k = config.engine_tile_m, config.engine_tile_n, config.engine_chunk_k
        self.tensor_base, self.tensor_bytes = dev.regions["tensor"]
        self.desc_base, _ = dev.regions["engine_desc"]
        self._lost = 0      # descriptors dropped by resets: completed + lost counts every finished sequence

    # -- tensor memory -----------------------------------------------------------------------------------
    def write_tensor(self, offset, data):
        """Write bytes or an array at byte `offset` of tensor memory."""
        self.dev.write(self.tensor_base + offset, data)

    def read_tensor(self, offset, dtype, count) -> np.ndarray:
        return self.dev.read_array(self.tensor_base + offset, dtype, count)

    # -- descriptors ---------------------------------------------------------------------------------------
    def reg(self, name):
        return self.dev.read_reg(f"engine.{name}")

    def submit(self, desc: Descriptor, *, check=True, timeout=10.0) -> int:
        """Queue `desc`; return its sequence number. With `check`, a descriptor the engine would reject
        raises the same named exception here, before anything is sent."""
        if check:
            code = validate(desc, self.tensor_bytes, self.width)
            if code != EngineStatus.OK:
                raise engine_error(code, where="the host-side check")
        words = desc.words(self.loops)
        deadline = time.monotonic() + timeout
        while True:
            status = self.reg("status")
            if status & cf.STATUS_ERROR:
                self._raise_error()
            if not status & cf.STATUS_QUEUE_FULL:
                break
            if time.monotonic() > deadline:
                raise EngineTimeout(f"the engine's queue stayed full for {timeout} s")
            time.sleep(0.001)
        seq = self.reg("submitted")
        slot = seq % self.queue
        self.dev.write(self.desc_base + slot * cf.DESC_SLOT_WORDS * 4, np.array(words, dtype="<u4"))
        self.dev.write_reg("engine.submit", 1)
        return seq

    def _raise_error(self):
        raise engine_error(self.reg("error_code"), self.reg("error_index"))

    def done(self, seq) -> bool:
        status = self.reg("status")
        if status & cf.STATUS_ERROR:
            index = self.reg("error_index")
            if (seq - index) % (1 << 32) < (1 << 31):     # seq is the rejected one or behind it
                self._raise_error()
        return (self.reg("completed") + self._lost - (seq + 1)) % (1 << 32) < (1 << 31)

    def wait(self, seq=None, timeout=30.0):
        """Wait until descriptor `seq` (default: every submitted one) completed; raise its error if it
        (or an earlier one) was rejected."""
        if seq is None:
            seq = self.reg("submitted") - 1
            if seq < 0:
                return
        deadline = time.monotonic() + timeout
        while not self.done(seq):
            if time.monotonic() > deadline:
                raise EngineTimeout(f"descriptor #{seq} did not complete within {timeout} s "
                                    f"(status {self.reg('status'):#x}); Engine.reset() aborts it")
            time.sleep(0.0005)

    def run(self, desc: Descriptor, **kw):
        """Submit and wait."""
        seq = self.submit(desc, **kw)
        self.wait(seq)
        return seq

    def reset(self):
        """Abort the running descriptor, flush the queue and clear an error."""
        self.dev.write_reg("engine.control", cf.CONTROL_RESET)
        self._lost = (self.reg("submitted") - self.reg("completed")) % (1 << 32)

    # -- counters ------------------------------------------------------------------------------------------
    def clear_counters(self):
        self.dev.write_reg("engine.control", cf.CONTROL_CLEAR_COUNTERS)

    def counters(self) -> dict:
        """Performance counters; `utilization` = MACs / (R·C · busy cycles)."""
        busy = self.reg("busy_cycles_lo")
        busy |= self.reg("busy_cycles_hi") << 32
        macs = self.reg("mac_count_lo")
        macs |= self.reg("mac_count_hi") << 32
        out = {"busy_cycles": busy, "mac_count": macs, "array_cycles": self.reg("array_cycles"),
               "stall_operand": self.reg("stall_operand"), "stall_drain": self.reg("stall_drain"),
               "stall_bus": self.reg("stall_bus"), "completed": self.reg("completed")}
        out["utilization"] = macs / (self.rows * self.cols * busy) if busy else 0.0
        return out
