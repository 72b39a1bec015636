"""Golden model of the contraction engine: the same descriptor, executed with numpy on a memory image.

`execute(desc, memory, width=8)` returns a new memory image (uint8) exactly as the engine leaves tensor
memory: D[m, n] = Σ_k A[m, k]·B[k, n] (+ C[m, n]) reduced modulo 2^32, written as little-endian int32.
`validate(desc, tensor_bytes, width)` returns the EngineStatus the engine reports for the descriptor (the
lowest applicable code). The model is the reference of the cocotb tests, the device tests and the emulator.
Caveat shared with the hardware: D must not overlap A, B or itself (C == D exactly is fine).
"""

import dataclasses

import numpy as np

from .rtl import contraction_format as cf
from .rtl.contraction_format import EngineStatus


@dataclasses.dataclass(frozen=True)
class Loop:
    extent: int
    role: int                  # cf.ROLE_K / ROLE_M / ROLE_N
    stride_a: int = 0          # in elements, signed
    stride_b: int = 0
    stride_c: int = 0
    stride_d: int = 0

    def stride(self, operand):
        return getattr(self, f"stride_{operand}")


@dataclasses.dataclass(frozen=True)
class Descriptor:
    loops: tuple               # Loop, outermost first
    base_a: int = 0            # byte addresses in tensor memory
    base_b: int = 0
    base_c: int = 0
    base_d: int = 0
    accumulate: bool = False   # add C
    fence: bool = True         # wait for earlier descriptors to complete first (cf.FLAG_FENCE)

    def base(self, operand):
        return getattr(self, f"base_{operand}")

    def words(self, loops: int) -> list:
        """The descriptor as `cf.desc_words(loops)` 32-bit words; unused loops get extent 1."""
        if len(self.loops) > loops:
            raise ValueError(f"descriptor has {len(self.loops)} loops; the engine has {loops}")
        padded = [Loop(1, cf.ROLE_K)] * (loops - len(self.loops)) + list(self.loops)
        words = [(cf.FLAG_ACCUMULATE if self.accumulate else 0) | (cf.FLAG_FENCE if self.fence else 0),
                 self.base_a, self.base_b, self.base_c, self.base_d]
        for lp in padded:
            words += [lp.extent | lp.role << cf.ROLE_SHIFT, lp.stride_a, lp.stride_b, lp.stride_c, lp.stride_d]
        return [w & 0xFFFFFFFF for w in words]

    @classmethod
    def from_words(cls, words, loops: int) -> "Descriptor":
        def signed(v):
            return v - (1 << 32) if v & (1 << 31) else v
        out = []
        for i in range(loops):
            w = words[cf.DESC_LOOPS + cf.LOOP_WORDS * i: cf.DESC_LOOPS + cf.LOOP_WORDS * (i + 1)]
            out.append(Loop(w[0] & cf.MAX_EXTENT, (w[0] >> cf.ROLE_SHIFT) & 3, *map(signed, w[1:5])))
        return cls(tuple(out), *words[1:5], accumulate=bool(words[cf.DESC_FLAGS] & cf.FLAG_ACCUMULATE),
                   fence=bool(words[cf.DESC_FLAGS] & cf.FLAG_FENCE))

    def shape(self):
        """(M, N, K): the products of the extents of each role."""
        size = {r: 1 for r in cf.ROLE_NAMES}
        for lp in self.loops:
            if lp.role in size:
                size[lp.role] *= lp.extent
        return size[cf.ROLE_M], size[cf.ROLE_N], size[cf.ROLE_K]


def elem_bytes(operand, width=8):
    return width // 8 if operand in ("a", "b") else cf.ACC_BYTES


def used_operands(desc):
    return ("a", "b", "c", "d") if desc.accumulate else ("a", "b", "d")


def validate(desc: Descriptor, tensor_bytes: int, width: int = 8) -> EngineStatus:
    """The status the engine reports for `desc` (lowest applicable code)."""
    address_bits = tensor_bytes.bit_length() - 1
    errors = set()
    for lp in desc.loops:
        if lp.extent == 0:
            errors.add(EngineStatus.ZERO_EXTENT)
        if lp.extent > 1 and lp.role not in cf.ROLE_NAMES:
            errors.add(EngineStatus.BAD_ROLE)
    for op in used_operands(desc):
        eb = elem_bytes(op, width)
        if desc.base(op) % eb:
            errors.add(EngineStatus.MISALIGNED)
        lo = hi = 0
        for lp in desc.loops:
            if lp.extent <= 1 or lp.role not in cf.OPERAND_ROLES[op]:
                continue
            s = lp.stride(op)
            if not -(1 << address_bits) < s < (1 << address_bits):
                errors.add(EngineStatus.STRIDE_RANGE)
            p = (lp.extent - 1) * s
            lo += min(p, 0)
            hi += max(p, 0)
        if desc.base(op) + lo * eb < 0 or desc.base(op) + hi * eb + eb > tensor_bytes:
            errors.add(EngineStatus[f"{op.upper()}_RANGE"])
    return min(errors) if errors else EngineStatus.OK


def role_offsets(desc, role, operand):
    """Element offsets of `operand` along the flattened index of `role` (nesting order, innermost fastest)."""
    off = np.zeros(1, dtype=np.int64)
    for lp in desc.loops:
        if lp.role == role:
            stride = lp.stride(operand) if role in cf.OPERAND_ROLES[operand] else 0
            off = (off[:, None] + np.arange(lp.extent, dtype=np.int64)[None, :] * stride).ravel()
    return off


def jumps(desc):
    """Per loop, the address generator's jumps for the slots of its role (cf.ROLE_SLOTS), padded to 3:
    J = stride − Σ_{inner loops of the same role} (extent − 1)·stride."""
    out = [None] * len(desc.loops)
    inner_sum = {}
    for i in reversed(range(len(desc.loops))):
        lp = desc.loops[i]
        slots = cf.ROLE_SLOTS.get(lp.role, ())
        row = []
        for s, op in enumerate(slots):
            row.append(lp.stride(op) - inner_sum.get((lp.role, s), 0))
            inner_sum[(lp.role, s)] = inner_sum.get((lp.role, s), 0) + (lp.extent - 1) * lp.stride(op)
        out[i] = row + [0] * (cf.SLOTS - len(row))
    return out


def execute(desc: Descriptor, memory, width: int = 8) -> np.ndarray:
    """Run `desc` on a copy of the memory image `memory` (bytes-like or uint8 array); return the new image.
    Raises ValueError naming the EngineStatus if the descriptor is invalid (memory is then unchanged)."""
    mem = np.frombuffer(bytes(memory), dtype=np.uint8).copy() if not isinstance(memory, np.ndarray) \
        else memory.astype(np.uint8, copy=True)
    status = validate(desc, mem.size, width)
    if status != EngineStatus.OK:
        raise ValueError(f"invalid descriptor: {status.name}")
    in_dtype = np.dtype(f"<i{width // 8}")
    ins = mem.view(in_dtype)
    accs = mem.view("<i4")

    def gather(view, op, r0, r1, eb):
        index = desc.base(op) // eb + role_offsets(desc, r0, op)[:, None] + role_offsets(desc, r1, op)[None, :]
        return view[index].astype(np.int64), index

    a, _ = gather(ins, "a", cf.ROLE_M, cf.ROLE_K, width // 8)
    b, _ = gather(ins, "b", cf.ROLE_K, cf.ROLE_N, width // 8)
    # Exact integer product; int64 cannot overflow for K < 2^31 / 2^30 (8/16-bit inputs) per chunk of K.
    d = np.zeros((a.shape[0], b.shape[1]), dtype=np.int64)
    chunk = 1 << 16
    for k0 in range(0, a.shape[1], chunk):
        d += (a[:, k0:k0 + chunk] @ b[k0:k0 + chunk, :]) & 0xFFFFFFFF
        d &= 0xFFFFFFFF
    if desc.accumulate:
        c, _ = gather(accs, "c", cf.ROLE_M, cf.ROLE_N, cf.ACC_BYTES)
        d = (d + c) & 0xFFFFFFFF
    _, d_index = gather(accs, "d", cf.ROLE_M, cf.ROLE_N, cf.ACC_BYTES)
    accs[d_index.ravel()] = d.astype(np.uint32).view(np.int32).ravel()
    return mem


def gemm(m, n, k, *, base_a, base_b, base_d, base_c=0, accumulate=False, lda=None, ldb=None, ldc=None, ldd=None,
         fence=True):
    """A row-major GEMM descriptor: A is M×K (row stride lda), B is K×N (ldb), C and D are M×N."""
    lda, ldb = lda or k, ldb or n
    ldc, ldd = ldc or n, ldd or n
    return Descriptor((Loop(m, cf.ROLE_M, stride_a=lda, stride_c=ldc, stride_d=ldd),
                       Loop(n, cf.ROLE_N, stride_b=1, stride_c=1, stride_d=1),
                       Loop(k, cf.ROLE_K, stride_a=1, stride_b=ldb)),
                      base_a=base_a, base_b=base_b, base_c=base_c, base_d=base_d, accumulate=accumulate,
                      fence=fence)
