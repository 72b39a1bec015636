"""TAPP-style tensor contractions on the device's contraction engine.

    import numpy as np, tensornic
    from tensornic.engine import engine_sim_config
    from tensornic.tapp import TensorInfo
    with tensornic.open("emulator", config=engine_sim_config()) as dev:      # or "sim", or a serial port
        d = dev.einsum("abk,kc->abc", a, b)                                    # int8 in, int32 out
        plan = dev.tensor_product(TensorInfo("int8", a.shape, ...), "abk", ..., D_info, "abc")
        plan.execute(alpha, A, B, beta, C, D)        # D = alpha·A·B + beta·C, everything modulo 2^32
        status = plan.execute_async(...); status.wait()
        print(plan.explain())                        # what runs where, blocks, tiles, expected traffic
        h = dev.upload(a)                            # a device-resident tensor, usable as A, B, C or D

The operation is TAPP's D(idx_D) = α·A(idx_A)·B(idx_B) + β·C(idx_C) with labels (strings or integers) in
every role TAPP has: contracted, free, batch (Hadamard), reduced-only, repeated (diagonal); zero-mode
tensors, extents 1 and 0; strides in elements, any integers (negative, zero, non-contiguous views).
Numerics: A and B int8 (the engine's input width), C and D int32; products, sums, α and β wrap modulo
2^32. Float inputs raise `UnsupportedType` (a TypeError) naming `tensornic.quantize.quantize_int8`.

Everything is validated before any device traffic, mirroring TAPP's reference checks; failures raise a
`TappError` subclass carrying TAPP's numeric error code (TAPP_ERR_*). docs/tapp.md has the full rules.
"""

import ctypes
import dataclasses
import math
import time

import numpy as np

from . import tapp_plan as tp
from .errors import DeviceMismatch, TensornicError

__all__ = ["TensorInfo", "DeviceTensor", "Plan", "Status", "tensor_product", "einsum", "upload", "empty",
           "TappError", "ExtentMismatchAB", "ExtentMismatchAD", "ExtentMismatchBD", "UnsharedIndexD",
           "CDModeMismatch", "CDIndexMismatch", "CDExtentMismatch", "DAliasing", "AIndexExtents",
           "BIndexExtents", "DIndexExtents", "CNullBeta", "NegativeNmode", "NegativeExtent", "InvalidKey",
           "NoExecutor", "TappNotImplemented", "UnsupportedType", "TensorMemoryFull",
           "IDENTITY", "CONJUGATE", "F32", "F64", "C32", "C64", "F16", "BF16", "I8", "I16", "I32"]

MASK = 0xFFFFFFFF

# TAPP datatypes (values ≥ 0x1000 are left to implementations: tensornic's integer types live there).
F32, F64, C32, C64, F16, BF16 = 0, 1, 2, 3, 4, 5
I8, I16, I32 = 0x1000, 0x1001, 0x1002
_TAPP_TYPES = {F32: "float32", F64: "float64", C32: "complex64", C64: "complex128", F16: "float16",
               BF16: "bfloat16", I8: "int8", I16: "int16", I32: "int32"}
# Element operations and precision attribute.
IDENTITY, CONJUGATE = 0, 1
_OPS = {IDENTITY: IDENTITY, CONJUGATE: CONJUGATE, "identity": IDENTITY, "conjugate": CONJUGATE}
DEFAULT_PREC = -1
_PRECISIONS = {"default": DEFAULT_PREC, DEFAULT_PREC: DEFAULT_PREC, None: DEFAULT_PREC,
               "i8i8_accum_i32": DEFAULT_PREC, "i16i16_accum_i32": DEFAULT_PREC}
_FLOAT_PRECISIONS = {"f32f32_accum_f32": 0, "f64f64_accum_f64": 1, "f16f16_accum_f16": 2,
                     "f16f16_accum_f32": 3, "bf16bf16_accum_f32": 4}

QUANTIZE_HINT = ("quantize float tensors with tensornic.quantize.quantize_int8(x) -> (q, scale) and "
                 "rescale the int32 result with tensornic.quantize.dequantize_product(d, scale_a, scale_b)")


# -- errors ---------------------------------------------------------------------------------------------

class TappError(TensornicError):
    """A TAPP check failed. `code` is TAPP's numeric error code (TAPP_ERR_*), `name` its name."""
    code = 0
    name = "TAPP_ERR_SUCCESS"

    def __init__(self, message):
        super().__init__(f"TAPP error {self.code} ({self.name}): {message}")
        self.detail = message


class ExtentMismatchAB(TappError):
    """A label shared by A and B has different extents."""
    code, name = 1, "TAPP_ERR_EXTENTS_AB"


class ExtentMismatchAD(TappError):
    """A label shared by A and D has different extents."""
    code, name = 2, "TAPP_ERR_EXTENTS_AD"


class ExtentMismatchBD(TappError):
    """A label shared by B and D has different extents."""
    code, name = 3, "TAPP_ERR_EXTENTS_BD"


class UnsharedIndexD(TappError):
    """A label of D is in neither A nor B."""
    code, name = 4, "TAPP_ERR_D_UNSHARED_IDX"


class CDModeMismatch(TappError):
    """C and D have different numbers of modes."""
    code, name = 5, "TAPP_ERR_CD_NDIM"


class CDIndexMismatch(TappError):
    """C's labels are not D's labels in the same order."""
    code, name = 6, "TAPP_ERR_CD_IDX"


class CDExtentMismatch(TappError):
    """C and D have different extents."""
    code, name = 7, "TAPP_ERR_EXTENTS_CD"


class DAliasing(TappError):
    """Two different coordinates of D address the same element (overlapping or zero strides)."""
    code, name = 8, "TAPP_ERR_D_ALIASING"


class AIndexExtents(TappError):
    """A label repeated within A has two different extents."""
    code, name = 9, "TAPP_ERR_A_IDX_EXTENTS"


class BIndexExtents(TappError):
    """A label repeated within B has two different extents."""
    code, name = 10, "TAPP_ERR_B_IDX_EXTENTS"


class DIndexExtents(TappError):
    """A label repeated within D has two different extents."""
    code, name = 11, "TAPP_ERR_D_IDX_EXTENTS"


class CNullBeta(TappError):
    """C is missing while beta is not zero."""
    code, name = 12, "TAPP_ERR_C_NULL_BETA"


class NegativeNmode(TappError):
    """A tensor was described with a negative number of modes."""
    code, name = 13, "TAPP_ERR_NMODE_NEGATIVE"


class NegativeExtent(TappError):
    """A tensor was described with a negative extent."""
    code, name = 14, "TAPP_ERR_EXTENTS_NEGATIVE"


class InvalidKey(TappError):
    """An unknown attribute key, element operation or precision."""
    code, name = 15, "TAPP_ERR_INVALID_KEY"


class NoExecutor(TappError, DeviceMismatch):
    """The device has no contraction engine to execute on."""
    code, name = 16, "TAPP_ERR_NO_EXECUTOR"


class TappNotImplemented(TappError, NotImplementedError):
    """The operation is valid TAPP but this back end does not do it."""
    code, name = 17, "TAPP_ERR_NOT_IMPLEMENTED"


class UnsupportedType(TappNotImplemented, TypeError):
    """A tensor's data type is not int8 (A, B) / int32 (C, D): floats need quantizing first."""


class TensorMemoryFull(TensornicError, MemoryError):
    """Tensor memory cannot hold a resident tensor, or the smallest block of a contraction."""


# -- tensor descriptions ----------------------------------------------------------------------------------

def _dtype(value):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if int(value) not in _TAPP_TYPES:
            raise InvalidKey(f"unknown TAPP datatype {int(value):#x} (known: "
                             f"{', '.join(f'{k:#x}={v}' for k, v in _TAPP_TYPES.items())})")
        value = _TAPP_TYPES[int(value)]
    if isinstance(value, str) and value == "bfloat16":
        return "bfloat16"
    return np.dtype(value)


class TensorInfo:
    """TAPP_create_tensor_info: data type, extents and strides (in elements, any integers) of a tensor.

    dtype: a numpy dtype (np.int8, "int32", …) or a TAPP datatype code (I8, I32, F32, …).
    strides: default row-major dense (numpy's C order; TAPP's own examples are column-major — pass them).
    nmode: optional, as in TAPP; must equal len(extents) (negative → NegativeNmode)."""

    def __init__(self, dtype, extents, strides=None, *, nmode=None):
        if nmode is not None:
            if nmode < 0:
                raise NegativeNmode(f"nmode is {nmode}; a tensor has zero or more modes")
            if nmode != len(extents):
                raise ValueError(f"nmode={nmode} but {len(extents)} extents were given")
        extents = tuple(int(e) for e in extents)
        for i, e in enumerate(extents):
            if e < 0:
                raise NegativeExtent(f"extent {e} of mode {i} (extents {extents}) is negative")
        if strides is None:
            strides, size = [], 1
            for e in reversed(extents):
                strides.append(size)
                size *= max(e, 1)
            strides = strides[::-1]
        strides = tuple(int(s) for s in strides)
        if len(strides) != len(extents):
            raise ValueError(f"{len(extents)} extents but {len(strides)} strides")
        self.dtype = _dtype(dtype)
        self.extents, self.strides = extents, strides

    @classmethod
    def of(cls, array):
        """The TensorInfo of a numpy array as it lies in memory (its own strides, in elements)."""
        array = np.asarray(array)
        return cls(array.dtype, array.shape, _element_strides(array))

    @property
    def nmode(self):
        return len(self.extents)

    @property
    def size(self):
        return math.prod(self.extents)

    def offset_range(self):
        """(lowest, highest) element offset any coordinate reaches (0, 0 for an empty or scalar tensor)."""
        lo = hi = 0
        if self.size:
            for e, s in zip(self.extents, self.strides):
                lo += min(0, (e - 1) * s)
                hi += max(0, (e - 1) * s)
        return lo, hi

    def __eq__(self, other):
        return isinstance(other, TensorInfo) and (self.dtype, self.extents, self.strides) == \
            (other.dtype, other.extents, other.strides)

    def __repr__(self):
        return f"TensorInfo({self.dtype}, extents={self.extents}, strides={self.strides})"


def _element_strides(array):
    item = array.itemsize
    bad = [s for s, e in zip(array.strides, array.shape) if s % item and e > 1]
    if bad:
        raise ValueError(f"array strides {array.strides} are not multiples of its element size {item}")
    return tuple(s // item for s in array.strides)


def _aliases(extents, strides):
    """True if two different coordinates reach the same offset (TAPP's check_self_aliasing, exact)."""
    modes = sorted((abs(s), e) for e, s in zip(extents, strides) if e > 1)
    if not modes or 0 in extents:
        return False
    if modes[0][0] == 0:
        return True
    reach = 0                                  # sufficient test: each stride clears all inner offsets
    for s, e in modes:
        if s <= reach:
            break
        reach += (e - 1) * s
    else:
        return False
    count = math.prod(e for _, e in modes)
    if count > 1 << 22:
        return True                            # too many to enumerate: treat the overlap as aliasing
    off = np.zeros(1, dtype=np.int64)
    for s, e in modes:
        off = (off[:, None] + np.arange(e, dtype=np.int64)[None, :] * s).ravel()
    return np.unique(off).size != off.size


# -- per-device state: engine and tensor-memory heap --------------------------------------------------------

class _Heap:
    """First-fit allocator over tensor memory (8-byte aligned blocks)."""

    def __init__(self, size):
        self.size = size
        self.free_list = [(0, size)]
        self.used = {}

    def alloc(self, nbytes, what="a tensor"):
        nbytes = max(tp.ALIGN, -(-nbytes // tp.ALIGN) * tp.ALIGN)
        for i, (start, size) in enumerate(self.free_list):
            if size >= nbytes:
                self.free_list[i] = (start + nbytes, size - nbytes)
                if self.free_list[i][1] == 0:
                    del self.free_list[i]
                self.used[start] = nbytes
                return start
        raise TensorMemoryFull(
            f"tensor memory cannot hold {what} ({nbytes:,} bytes; {self.largest():,} of {self.size:,} "
            f"bytes free in one piece). Free resident tensors (DeviceTensor.free()) or pass host arrays, "
            f"which the planner tiles.")

    def free(self, start):
        size = self.used.pop(start)
        spans = sorted(self.free_list + [(start, size)])
        merged = []
        for s, n in spans:
            if merged and merged[-1][0] + merged[-1][1] == s:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((s, n))
        self.free_list = merged

    def largest(self):
        return max((n for _, n in self.free_list), default=0)


class _State:
    def __init__(self, dev):
        from .engine import Engine
        try:
            self.engine = Engine(dev)
        except DeviceMismatch as exc:
            raise NoExecutor(f"{exc}. tensor_product/einsum/upload need a device with the contraction "
                             f"engine, e.g. tensornic.open('sim', config=engine_sim_config()).") from None
        self.heap = _Heap(self.engine.tensor_bytes)
        self.in_dtype = np.dtype(f"int{self.engine.width}")


def _state(dev) -> _State:
    state = dev.__dict__.get("_tapp_state")
    if state is None:
        state = dev.__dict__["_tapp_state"] = _State(dev)
    return state


def _read_span(state, lo_byte, nbytes):
    if nbytes <= 0:
        return np.zeros(0, np.uint8)
    return state.engine.read_tensor(lo_byte, np.uint8, nbytes)


# -- device-resident tensors -------------------------------------------------------------------------------

class DeviceTensor:
    """A tensor in the device's tensor memory (from `dev.upload(array)` or `empty(dev, shape, dtype)`).
    Usable as A, B, C or D of any plan on the same device; `download()` returns it as a numpy array."""

    def __init__(self, dev, address, nbytes, info: TensorInfo, origin):
        self.dev, self.address, self.nbytes, self.info, self.origin = dev, address, nbytes, info, origin

    @property
    def shape(self):
        return self.info.extents

    @property
    def dtype(self):
        return self.info.dtype

    def _check(self):
        if self.address is None:
            raise ValueError("this DeviceTensor was freed")

    def download(self) -> np.ndarray:
        """The tensor's values (a new C-order numpy array)."""
        self._check()
        state = _state(self.dev)
        labels = tuple(range(self.info.nmode))
        return _download_view(state, self.origin, self.info.dtype, labels, self.info.extents,
                              dict(zip(labels, self.info.strides))).copy()

    def write(self, array):
        """Overwrite the tensor's values from a host array of the same shape."""
        self._check()
        array = np.asarray(array)
        if array.shape != self.shape or array.dtype != self.dtype:
            raise ValueError(f"write takes a {self.dtype} array of shape {self.shape}, not {array.dtype} "
                             f"{array.shape}")
        labels = tuple(range(self.info.nmode))
        _upload_view(_state(self.dev), array, self.origin, labels, dict(zip(labels, self.info.strides)))

    def free(self):
        if self.address is not None:
            _state(self.dev).heap.free(self.address)
            self.address = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    def __repr__(self):
        where = f"at {self.address:#x}" if self.address is not None else "freed"
        return f"<DeviceTensor {self.dtype} {self.shape} {where}>"


def _check_data_type(dtype, allowed, what):
    dtype = np.dtype(dtype) if dtype != "bfloat16" else dtype
    if dtype in allowed:
        return
    if dtype == "bfloat16" or dtype.kind in "fc":
        raise UnsupportedType(f"{what} is {dtype}; the engine multiplies {allowed[0]} integers only: "
                              f"{QUANTIZE_HINT}")
    raise UnsupportedType(f"{what} is {dtype}; it must be {' or '.join(str(a) for a in allowed)} "
                          f"(convert with .astype(np.{allowed[0]}) if the values fit)")


def upload(dev, array) -> DeviceTensor:
    """Copy a host array into tensor memory, dense, keeping the order of its modes in memory (a
    column-major array stays column-major: no transpose); return its DeviceTensor handle."""
    state = _state(dev)
    array = np.asarray(array)
    _check_data_type(array.dtype, (state.in_dtype, np.dtype(np.int32)), "the uploaded array")
    order = _memory_order(array)
    handle = empty(dev, array.shape, array.dtype, strides=_packed_strides(array.shape, order))
    if array.size:
        state.engine.write_tensor(handle.origin, np.ascontiguousarray(array.transpose(order)))
    return handle


def empty(dev, shape, dtype="int32", strides=None) -> DeviceTensor:
    """Allocate an uninitialised dense tensor in tensor memory (e.g. a resident D); row-major unless
    `strides` (a dense permutation, in elements) says otherwise."""
    state = _state(dev)
    dtype = np.dtype(dtype)
    _check_data_type(dtype, (state.in_dtype, np.dtype(np.int32)), "the tensor's dtype")
    info = TensorInfo(dtype, shape, strides)
    if info.size and _aliases(info.extents, info.strides):
        raise ValueError(f"strides {info.strides} overlap for extents {info.extents}")
    lo, hi = info.offset_range()
    if lo < 0:
        raise ValueError(f"strides {info.strides} must be non-negative for a new tensor")
    nbytes = max(1, hi + 1) * dtype.itemsize
    address = state.heap.alloc(nbytes, f"a {dtype} tensor of shape {tuple(shape)}")
    return DeviceTensor(dev, address, nbytes, info, address)


# -- moving labelled views between host and device ------------------------------------------------------------

def _span(extents, strides):
    lo = hi = 0
    for e, s in zip(extents, strides):
        lo += min(0, (e - 1) * s)
        hi += max(0, (e - 1) * s)
    return lo, hi


def _download_view(state, origin, dtype, labels, extents, strides):
    """Values of a resident tensor as a view indexed by `labels` (reads the whole byte span once)."""
    dtype = np.dtype(dtype)
    ext = [extents[i] for i in range(len(labels))]
    st = [strides[lab] for lab in labels]
    if math.prod(ext) == 0:
        return np.zeros(ext, dtype)
    lo, hi = _span(ext, st)
    raw = _read_span(state, origin + lo * dtype.itemsize, (hi - lo + 1) * dtype.itemsize).view(dtype)
    return np.lib.stride_tricks.as_strided(raw[-lo:], shape=ext, strides=[s * dtype.itemsize for s in st],
                                           writeable=False)


def _upload_view(state, values, origin, labels, strides):
    """Write `values` (indexed by labels) into a resident tensor laid out with `strides` (read-modify-write
    of the byte span, so bytes between the elements are kept)."""
    values = np.asarray(values)
    if values.size == 0:
        return
    st = [strides[lab] for lab in labels]
    lo, hi = _span(values.shape, st)
    item = values.itemsize
    if hi - lo + 1 == values.size:
        raw = np.empty(values.size, values.dtype)       # dense (and never aliasing): no read needed
    else:
        raw = _read_span(state, origin + lo * item, (hi - lo + 1) * item).view(values.dtype).copy()
    view = np.lib.stride_tricks.as_strided(raw[-lo:], shape=values.shape, strides=[s * item for s in st],
                                           writeable=True)
    view[...] = values
    state.engine.write_tensor(origin + lo * item, raw)


# -- operands ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Host:
    """A host operand as a view with one axis per unique label (diagonals are summed strides)."""
    view: np.ndarray
    labels: tuple
    raw: tuple = None          # (pointer of the element at the lowest offset, byte length) for span uploads

    @property
    def resident(self):
        return False


@dataclasses.dataclass
class _Resident:
    handle: DeviceTensor
    origin: int                # byte address of element (0, …, 0)
    labels: tuple
    strides: dict              # label → element stride (summed over repeats)

    @property
    def resident(self):
        return True


def _resolve(x, info, idx, ulabels, uext, name, allowed, writable=False):
    """Check operand `x` against its TensorInfo and return a _Host or _Resident source."""
    ustr = tp.unique_strides(idx, info.strides)
    if isinstance(x, DeviceTensor):
        x._check()
        _check_data_type(x.dtype, allowed, f"{name} (a DeviceTensor)")
        if x.dtype != info.dtype:
            raise TypeError(f"{name} is a {x.dtype} DeviceTensor but its TensorInfo says {info.dtype}")
        lo, hi = info.offset_range()
        item = x.dtype.itemsize
        if info.size and (x.origin + lo * item < x.address or x.origin + (hi + 1) * item > x.address + x.nbytes):
            raise ValueError(f"{name}'s TensorInfo {info} reaches outside its DeviceTensor {x!r}")
        return _Resident(x, x.origin, ulabels, ustr)
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray):
        buf, off = x
        if buf.ndim != 1:
            raise ValueError(f"{name} given as (buffer, offset) needs a 1-D buffer, not shape {buf.shape}")
    else:
        buf, off = x, None
        if not isinstance(buf, np.ndarray):
            if writable:
                raise TypeError(f"{name} must be a writable numpy array or a DeviceTensor, not "
                                f"{type(x).__name__}")
            if isinstance(buf, (list, tuple, int, np.integer)):
                buf = np.asarray(buf)
            else:
                raise TypeError(f"{name} must be a numpy array, a (buffer, offset) pair or a DeviceTensor, "
                                f"not {type(x).__name__}")
    _check_data_type(buf.dtype, allowed, name)
    if buf.dtype != info.dtype:
        raise TypeError(f"{name} is a {buf.dtype} array but its TensorInfo says {info.dtype}")
    item = buf.itemsize
    if off is None and buf.shape == info.extents:
        if info.size and any(e > 1 and s != t * item for e, s, t in zip(info.extents, buf.strides, info.strides)):
            raise ValueError(f"{name}'s strides {_element_strides(buf)} (elements) differ from its TensorInfo "
                             f"strides {info.strides}; describe the array with TensorInfo.of({name.lower()})")
        origin, step = buf, item
    elif off is not None or buf.ndim == 1:
        # A raw buffer: element (0, …, 0) at buf[off]; every offset must land inside it.
        off = 0 if off is None else int(off)
        lo, hi = info.offset_range()
        if info.size and (off + lo < 0 or off + hi >= buf.shape[0]):
            raise ValueError(f"{name}: offsets {off + lo}…{off + hi} of {info} fall outside its buffer of "
                             f"{buf.shape[0]} elements")
        origin, step = (buf[off:] if off < buf.shape[0] else buf[:0]), buf.strides[0] if buf.ndim else item
    else:
        raise ValueError(f"{name} has shape {buf.shape} but its TensorInfo has extents {info.extents}")
    if writable and not buf.flags.writeable:
        raise ValueError(f"{name} is read-only; D must be writable")
    shape = [uext[lab] for lab in ulabels]
    if math.prod(shape) == 0 or origin.size == 0 and info.size == 0:
        view = np.zeros(shape, buf.dtype)
        return _Host(view, ulabels)
    strides = [ustr[lab] * step for lab in ulabels]
    view = np.lib.stride_tricks.as_strided(origin, shape=shape, strides=strides, writeable=writable)
    lo, hi = _span(shape, [ustr[lab] for lab in ulabels])
    raw = (origin.__array_interface__["data"][0] + lo * step, (hi - lo) * step + item) if step == item else None
    return _Host(view, ulabels, raw)


def _raw_bytes(host: _Host):
    """The memory span a dense-ish host view covers, as bytes (for uploading it in its own layout)."""
    ptr, n = host.raw
    return ctypes.string_at(ptr, n)


def _memory_order(view):
    """Axes of a view from the largest |byte stride| to the smallest: packing in this order keeps the
    tensor's own memory layout (no transpose), only the gaps and reversed directions go."""
    return sorted(range(view.ndim), key=lambda i: -abs(view.strides[i]))


def _packed_strides(shape, order):
    strides, size = [0] * len(shape), 1
    for ax in reversed(order):
        strides[ax] = size
        size *= shape[ax]
    return strides


def _wrap32(values):
    return (np.asarray(values, dtype=np.int64) & MASK).astype(np.uint32).view(np.int32)


def _int_scalar(value, name):
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value) & MASK
    if isinstance(value, (float, np.floating, complex, np.complexfloating)):
        raise UnsupportedType(f"{name} = {value!r}: alpha and beta are integers applied modulo 2^32; "
                              f"fold float scales into the dequantization ({QUANTIZE_HINT})")
    raise TypeError(f"{name} must be an integer, not {type(value).__name__}")


# -- plans ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class RunInfo:
    """What one execution did: the blocking, host steps, descriptors and link bytes."""
    blocking: object
    descriptors: int
    link_bytes: int
    host_steps: list
    device_steps: list
    seconds: float = 0.0


class Status:
    """The status of an asynchronous execution (TAPP_status): `wait()` finishes it and returns D."""

    def __init__(self, finish, result, info=None):
        self._finish, self._result, self.info = finish, result, info

    def done(self) -> bool:
        return self._finish is None

    def wait(self, timeout=60.0):
        if self._finish is not None:
            finish, self._finish = self._finish, None
            finish(timeout)
        return self._result


class Plan:
    """TAPP_create_tensor_product's result: a validated contraction bound to a device; execute it any
    number of times with `execute(alpha, A, B, beta, C, D)`."""

    def __init__(self, dev, A, idx_A, B, idx_B, C, idx_C, D, idx_D, *, op_A=IDENTITY, op_B=IDENTITY,
                 op_C=IDENTITY, op_D=IDENTITY, precision="default"):
        for op_name, op in (("op_A", op_A), ("op_B", op_B), ("op_C", op_C), ("op_D", op_D)):
            if op not in _OPS:
                raise InvalidKey(f"{op_name}={op!r} is not an element operation (identity=0, conjugate=1)")
        prec = precision.lower() if isinstance(precision, str) else precision
        if prec in _FLOAT_PRECISIONS:
            raise UnsupportedType(f"precision {precision!r} is a floating-point precision; the engine computes "
                                  f"int8 × int8 → int32: {QUANTIZE_HINT}")
        if prec not in _PRECISIONS:
            raise InvalidKey(f"unknown precision {precision!r} (use 'default')")
        infos = {"A": A, "B": B, "C": C, "D": D}
        idxs = {"A": idx_A, "B": idx_B, "C": idx_C, "D": idx_D}
        for name in "ABD":
            if not isinstance(infos[name], TensorInfo):
                raise TypeError(f"{name}_info must be a TensorInfo, not {type(infos[name]).__name__}")
        if C is not None and not isinstance(C, TensorInfo):
            raise TypeError(f"C_info must be a TensorInfo or None, not {type(C).__name__}")
        for name, info in infos.items():
            if info is None:
                continue
            idx = idxs[name]
            if idx is None:
                raise ValueError(f"idx_{name} is missing")
            idx = tuple(idx)
            if len(idx) != info.nmode:
                raise ValueError(f"idx_{name} has {len(idx)} labels but {name} has {info.nmode} modes")
            idxs[name] = idx
        self.dev = dev
        self.infos, self.idx = infos, idxs
        self._check_structure()
        state = _state(dev)                     # NoExecutor for a device without an engine
        self._check_types(state)
        a, b, d = idxs["A"], idxs["B"], idxs["D"]
        self.labels = tp.analyze(a, A.extents, b, B.extents, d)
        self.ulabels = {n: tp.unique(idxs[n]) for n in infos if infos[n] is not None}
        self.extent = {lab.name: lab.extent for lab in self.labels}
        self.last = None

    # -- TAPP's checks, in the reference implementation's order -------------------------------------------
    def _check_structure(self):
        infos, idx = self.infos, self.idx
        A, B, C, D = infos["A"], infos["B"], infos["C"], infos["D"]
        in_ab = set(idx["A"]) | set(idx["B"])
        for lab in idx["D"]:
            if lab not in in_ab:
                raise UnsharedIndexD(f"label {lab!r} of D is in neither A {idx['A']} nor B {idx['B']}")

        def check(x, other, err):
            for lab, e in zip(idx[x], infos[x].extents):
                for lab2, e2 in zip(idx[other], infos[other].extents):
                    if lab2 == lab and e2 != e:
                        what = f"twice in {x}" if other == x else f"in {x} and {other}"
                        raise err(f"label {lab!r} has extents {e} and {e2} {what}")

        # The reference checks each tensor against itself and the others label by label; checking every
        # tensor against itself first makes each code reachable (a repeated label of D is also in A or B).
        check("A", "A", AIndexExtents)
        check("B", "B", BIndexExtents)
        check("D", "D", DIndexExtents)
        check("A", "B", ExtentMismatchAB)
        check("A", "D", ExtentMismatchAD)
        check("B", "D", ExtentMismatchBD)
        if C is not None:
            if C.nmode != D.nmode:
                raise CDModeMismatch(f"C has {C.nmode} modes, D has {D.nmode}")
            if tuple(idx["C"]) != tuple(idx["D"]):
                raise CDIndexMismatch(f"C's labels {idx['C']} differ from D's {idx['D']}")
            if C.extents != D.extents:
                raise CDExtentMismatch(f"C's extents {C.extents} differ from D's {D.extents}")
        if _aliases(D.extents, D.strides):
            raise DAliasing(f"D's strides {D.strides} with extents {D.extents} reach one element from two "
                            f"coordinates")

    def _check_types(self, state):
        ins, acc = (state.in_dtype,), (np.dtype(np.int32),)
        for name, allowed in (("A", ins), ("B", ins), ("C", acc), ("D", acc)):
            info = self.infos[name]
            if info is not None:
                _check_data_type(info.dtype, allowed, f"{name}'s data type")

    # -- execution ------------------------------------------------------------------------------------------
    def execute(self, alpha, A, B, beta, C, D, *, timeout=60.0):
        """D = alpha·A·B + beta·C (modulo 2^32). A..D: numpy arrays matching their TensorInfos (or 1-D
        buffers / (buffer, offset) pairs holding element (0,…,0) at the offset), or DeviceTensors.
        C may be None when beta is 0. Returns D (the array or handle given)."""
        return self.execute_async(alpha, A, B, beta, C, D).wait(timeout)

    def execute_async(self, alpha, A, B, beta, C, D) -> Status:
        """Upload, queue the descriptors and return at once; `status.wait()` collects D."""
        return _Run(self, alpha, A, B, beta, C, D).start()

    # -- explanation -------------------------------------------------------------------------------------
    def explain(self) -> str:
        """What runs where: label roles, host steps, engine descriptors (loops, tiles), the blocking the
        planner chose and the traffic it expects. Describes the last execution, or — before the first —
        an execution with host arrays laid out as the TensorInfos say (alpha 1, beta 1 if C exists)."""
        if self.last is None:
            info = self._dry_run()
        else:
            info = self.last
        return _explain(self, info)

    def _dry_run(self):
        infos = self.infos
        fake = {}
        for name, info in infos.items():
            if info is None:
                continue
            lo, hi = info.offset_range()
            n = hi - lo + 1 if info.size else 0
            fake[name] = (np.zeros(max(n, 1), info.dtype), -lo)
        run = _Run(self, 1, fake["A"], fake["B"], 1 if "C" in fake else 0, fake.get("C"), fake["D"])
        return run.describe()


def tensor_product(dev, A_info, idx_A, B_info, idx_B, C_info, idx_C, D_info, idx_D, *, op_A=IDENTITY,
                   op_B=IDENTITY, op_C=IDENTITY, op_D=IDENTITY, precision="default") -> Plan:
    """TAPP_create_tensor_product: validate and plan D(idx_D) = α·A(idx_A)·B(idx_B) + β·C(idx_C) on `dev`.
    Labels are strings (one label per character) or sequences of hashable labels (e.g. integers).
    C_info and idx_C may be None (then beta must be 0 when executing)."""
    return Plan(dev, A_info, idx_A, B_info, idx_B, C_info, idx_C, D_info, idx_D, op_A=op_A, op_B=op_B,
                op_C=op_C, op_D=op_D, precision=precision)


# -- one execution ---------------------------------------------------------------------------------------------

class _Run:
    def __init__(self, plan, alpha, A, B, beta, C, D):
        self.plan = plan
        self.state = state = _state(plan.dev)
        self.alpha = _int_scalar(alpha, "alpha")
        self.beta = _int_scalar(beta, "beta")
        infos, idx, ul, ext = plan.infos, plan.idx, plan.ulabels, plan.extent
        ins, acc = (state.in_dtype,), (np.dtype(np.int32),)
        if self.beta and (C is None or infos["C"] is None):
            raise CNullBeta(f"beta is {beta} but " + ("no C was given" if infos["C"] is not None else
                                                      "the plan has no C_info"))
        self.src = {"a": _resolve(A, infos["A"], idx["A"], ul["A"], ext, "A", ins),
                    "b": _resolve(B, infos["B"], idx["B"], ul["B"], ext, "B", ins),
                    "d": _resolve(D, infos["D"], idx["D"], ul["D"], ext, "D", acc, writable=True)}
        if self.beta:
            self.src["c"] = _resolve(C, infos["C"], idx["C"], ul["C"], ext, "C", acc)
        self.D = D
        self.host_steps, self.device_steps = [], []

    # -- decisions (no device traffic) -------------------------------------------------------------------
    def _decide(self):
        plan, src = self.plan, self.src
        labels = plan.labels
        self.empty = math.prod(plan.infos["D"].extents) == 0
        self.no_product = self.alpha == 0 or any(lab.extent == 0 for lab in labels)
        self.c_dev = None                   # C the engine accumulates: a source, "host-scaled", or None
        self.c_from, self.c_scale = None, 1  # C read on the host (for C' = β·C or the epilogue)
        self.epilogue = self.alpha != 1
        if self.empty:
            self.host_steps.append("D has no elements: nothing to do")
            return
        if self.no_product:
            why = "alpha is 0" if self.alpha == 0 else "a summed label has extent 0"
            self.host_steps.append(f"{why}: D = beta·C on the host, no engine pass")
            return
        # Host inputs that share memory with a host D are copied first (D is written block by block).
        if not src["d"].resident:
            for op in ("a", "b", "c"):
                s = src.get(op)
                if s is not None and not s.resident and np.may_share_memory(s.view, src["d"].view):
                    src[op] = _Host(s.view.copy(), s.labels, None)
                    self.host_steps.append(f"{op.upper()} shares memory with D: copied first")
        if self.beta:
            c = src["c"]
            if self.epilogue or self.beta != 1:
                scaled = "C" if self.beta == 1 else f"{_signed(self.beta)}·C"
                if self.epilogue:
                    self.host_steps.append(f"epilogue on the host: D = {_signed(self.alpha)}·(A·B) + {scaled} "
                                           f"(modulo 2^32) — the engine computes A·B, C never goes up")
                else:
                    self.host_steps.append(f"C' = {scaled} formed on the host while packing C (modulo 2^32); "
                                           f"the engine accumulates C'")
                self.c_scale = self.beta
                self.c_from = c
                if not self.epilogue:
                    self.c_dev = "host-scaled"
            else:
                self.c_dev = c
                if c.resident and src["d"].resident and self._overlap(c, src["d"]) and \
                        (c.origin != src["d"].origin or c.strides != src["d"].strides):
                    self.c_dev = "host-scaled"
                    self.c_scale, self.c_from = 1, c
                    self.host_steps.append("C and D overlap with different layouts: C is copied through the host")
        elif self.epilogue:
            self.host_steps.append(f"epilogue on the host: D = {_signed(self.alpha)}·(A·B) (modulo 2^32)")

    @staticmethod
    def _overlap(x, y):
        return x.handle.address < y.handle.address + y.handle.nbytes and \
            y.handle.address < x.handle.address + x.handle.nbytes

    def _model(self):
        plan, src, eng = self.plan, self.src, self.state.engine
        host = {"a": not src["a"].resident, "b": not src["b"].resident, "d": not src["d"].resident,
                "c": self.c_dev is not None and (self.c_dev == "host-scaled" or not self.c_dev.resident)}
        op_labels = {"a": set(plan.ulabels["A"]), "b": set(plan.ulabels["B"]), "c": set(plan.ulabels["D"]),
                     "d": set(plan.ulabels["D"])}
        elem = {"a": self.state.in_dtype.itemsize, "b": self.state.in_dtype.itemsize, "c": 4, "d": 4}
        return tp.Model(plan.labels, op_labels, elem, host, eng, plan.dev.config.max_transfer)

    def describe(self):
        """Decide and plan without touching the device (for explain() before the first execution)."""
        self._decide()
        blocking = None
        if not self.empty and not self.no_product:
            model = self._model()
            cfg = self.plan.dev.config
            blocking = tp.plan_blocks(model, self.state.heap.largest(), self.c_dev is not None, cfg.baud,
                                      cfg.clock_hz)
            self._describe_blocking(blocking, model)
            # the loops of the first block, with strides as the TensorInfos give them
            plan = self.plan
            layouts = {}
            for op, name in (("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")):
                info = plan.infos[name]
                if info is not None and (op != "c" or self.beta):
                    layouts[op] = tp.OpLayout(0, 1, tp.unique_strides(plan.idx[name], info.strides))
            ranges = {lab.name: (0, blocking.block[lab.name]) for lab in plan.labels}
            self.device_steps.extend(tp.loops_text(*tp.engine_loops(plan.labels, ranges, layouts,
                                                                    self.state.engine.loops)))
        return RunInfo(blocking, blocking.descriptors if blocking else 0,
                       blocking.wire_bytes if blocking else 0, self.host_steps, self.device_steps)

    def _describe_blocking(self, blocking, model):
        if blocking is None:
            return
        for op, name in (("a", "A"), ("b", "B")):
            s = self.src[op]
            if s.resident:
                self.device_steps.append(f"{name} is resident at {s.origin:#x}: read in place")
            elif blocking.blocks == 1 and self._span_ok(s):
                self.host_steps.append(f"{name} uploaded as its memory span ({s.raw[1]:,} bytes, its own "
                                       f"layout and strides, no packing)")
            else:
                self.host_steps.append(f"{name} packed per block in its own memory order (gaps and reversed "
                                       f"directions removed, no transpose) and uploaded")
        d = self.src["d"]
        if self.c_dev is not None:
            if self.c_dev == "host-scaled" or not self.c_dev.resident:
                into = "D's block buffer (C == D in place)" if not d.resident else "a C block buffer"
                self.host_steps.append(f"C{'′' if self.c_dev == 'host-scaled' else ''} packed per block into "
                                       f"{into}; the engine accumulates it (flag accumulate)")
            else:
                self.device_steps.append(f"C is resident at {self.c_dev.origin:#x}: accumulated in place")
        if d.resident:
            self.device_steps.append(f"D is resident at {d.origin:#x}: written in place"
                                     + (" (then read back once for the epilogue)" if self.epilogue else ""))
        else:
            self.host_steps.append("D received per block from a packed buffer and written into the array"
                                   + (" through the epilogue" if self.epilogue else ""))

    @staticmethod
    def _span_ok(s):
        """Upload a host input as its raw memory span when that is at most twice its element bytes."""
        return s.raw is not None and s.raw[1] <= 2 * max(s.view.nbytes, 1)

    # -- execution --------------------------------------------------------------------------------------------
    def start(self) -> Status:
        t0 = time.perf_counter()
        self._decide()
        plan, src, state = self.plan, self.src, self.state
        stats0 = plan.dev.link.stats.bytes_sent + plan.dev.link.stats.bytes_received
        if self.empty:
            return self._done(None, 0, stats0, t0)
        if self.no_product:
            values = np.zeros([plan.extent[lab] for lab in plan.ulabels["D"]], np.int64)
            if self.beta:
                values = self.beta * self._values(src["c"]).astype(np.int64)
            self._store_d(_wrap32(values))
            return self._done(None, 0, stats0, t0)
        if self.c_from is not None:
            c_vals = self._values(self.c_from)
            if np.may_share_memory(c_vals, src["d"].view if not src["d"].resident else np.zeros(0)):
                c_vals = c_vals.copy()
            self.c_values = _wrap32(self.c_scale * c_vals.astype(np.int64))
        model = self._model()
        cfg = plan.dev.config
        budget = state.heap.largest()
        blocking = tp.plan_blocks(model, budget, self.c_dev is not None, cfg.baud, cfg.clock_hz)
        if blocking is None:
            raise TensorMemoryFull(f"even the smallest block of this contraction does not fit the "
                                   f"{budget:,} free bytes of tensor memory; free resident tensors")
        self._describe_blocking(blocking, model)
        self.blocking = blocking
        executor = _BlockExecutor(self, blocking, model)
        try:
            finish = executor.run()
        except BaseException:
            executor.release()
            raise

        def complete(timeout):
            try:
                finish(timeout)
                if self.epilogue and src["d"].resident:
                    p = self._values(src["d"]).astype(np.int64)
                    extra = self.c_values.astype(np.int64) if self.beta else 0
                    self._store_d(_wrap32(self.alpha * p + extra))
            finally:
                executor.release()
            plan.last = self._info(blocking, executor.descriptors, stats0, t0)

        return Status(complete, self.D)

    def _done(self, blocking, descriptors, stats0, t0):
        self.plan.last = self._info(blocking, descriptors, stats0, t0)
        return Status(None, self.D, self.plan.last)

    def _info(self, blocking, descriptors, stats0, t0):
        stats = self.plan.dev.link.stats
        return RunInfo(blocking, descriptors, stats.bytes_sent + stats.bytes_received - stats0,
                       self.host_steps, self.device_steps, time.perf_counter() - t0)

    def _values(self, s):
        """Values of a source as a label view (downloads a resident one)."""
        if s.resident:
            ext = [self.plan.extent[lab] for lab in s.labels]
            return _download_view(self.state, s.origin, s.handle.dtype, s.labels, ext, s.strides)
        return s.view

    def _store_d(self, values):
        d = self.src["d"]
        if d.resident:
            _upload_view(self.state, values, d.origin, d.labels, d.strides)
        else:
            d.view[...] = values


def _signed(v):
    return v - (1 << 32) if v & (1 << 31) else v


class _BlockExecutor:
    """Runs a Blocking: packs and uploads host blocks into double-buffered slots, queues descriptors,
    downloads D blocks while the engine works on the next ones."""

    def __init__(self, run: _Run, blocking, model):
        self.run_, self.blocking, self.model = run, blocking, model
        self.state, self.engine = run.state, run.state.engine
        self.heap = run.state.heap
        self.arena = None
        self.descriptors = 0
        self.first = True

    def release(self):
        if self.arena is not None:
            self.heap.free(self.arena)
            self.arena = None

    def _slots(self, nbytes, count):
        out = []
        for _ in range(count):
            out.append(self._next)
            self._next += -(-nbytes // tp.ALIGN) * tp.ALIGN
        return out

    def run(self):
        run, blk, src = self.run_, self.blocking, self.run_.src
        plan = run.plan
        labels = plan.labels
        block = blk.block
        single = blk.blocks == 1
        slots = tp.slot_counts(blk.counts)
        slots["c"] = slots["d"]
        # Buffers (one arena): A and B slots, D (or C') slots.
        d_host = not src["d"].resident
        c_host = run.c_dev == "host-scaled" or (run.c_dev is not None and not run.c_dev.resident)
        for use_span in (True, False):
            sizes, span = {}, {}
            for op in ("a", "b"):
                s = src[op]
                if not s.resident:
                    if use_span and single and run._span_ok(s):
                        span[op] = True
                        sizes[op] = s.raw[1]
                    else:
                        sizes[op] = self.model.op_bytes(op, block)
            if d_host:
                sizes["d"] = self.model.op_bytes("d", block)
            elif c_host:
                sizes["c"] = self.model.op_bytes("c", block)
            total = sum(slots[op] * -(-n // tp.ALIGN) * tp.ALIGN for op, n in sizes.items())
            if total <= self.heap.largest():
                break
        if total:
            self.arena = self.heap.alloc(total, "the contraction's block buffers")
        self._next = self.arena or 0
        buf = {op: self._slots(n, slots[op]) for op, n in sizes.items()}
        last_seq = {}                         # (op, slot) → last descriptor sequence that used it
        loaded = {}                           # (op, slot) → block key held
        pending = []                          # D blocks waiting for download: (seq, slot, ranges)
        timeout = 60.0

        def wait_slot(op, slot):
            seq = last_seq.get((op, slot))
            if seq is not None:
                self.engine.wait(seq, timeout)

        def layout_of(op, s, ranges):
            """(OpLayout, slot or None) of operand `op` for the block `ranges`, uploading host data."""
            eb = self.model.elem[op]
            labs = s.labels
            if s.resident:
                base = s.origin + eb * sum(ranges[lab][0] * s.strides[lab] for lab in labs)
                return tp.OpLayout(base, eb, dict(s.strides)), None
            step = s.view.itemsize
            if span.get(op):
                addr = buf[op][0]
                if loaded.get((op, 0)) is None:
                    self.engine.write_tensor(addr, np.frombuffer(_raw_bytes(s), np.uint8))
                    loaded[(op, 0)] = "span"
                origin_ptr = s.view.__array_interface__["data"][0]
                strides = {lab: s.view.strides[i] // step for i, lab in enumerate(labs)}
                return tp.OpLayout(addr + (origin_ptr - s.raw[0]), eb, strides), 0
            shape = [ranges[lab][1] for lab in labs]
            order = _memory_order(s.view)
            strides = dict(zip(labs, _packed_strides(shape, order)))
            key = tuple(ranges[lab] for lab in labs)
            for sl in range(len(buf[op])):             # a slot still holding this block is reused
                if loaded.get((op, sl)) == key:
                    return tp.OpLayout(buf[op][sl], eb, strides), sl
            sl = turn.get(op, 0)
            turn[op] = (sl + 1) % len(buf[op])
            wait_slot(op, sl)
            sub = s.view[tuple(slice(ranges[lab][0], ranges[lab][0] + ranges[lab][1]) for lab in labs)]
            self.engine.write_tensor(buf[op][sl], np.ascontiguousarray(sub.transpose(order)))
            loaded[(op, sl)] = key
            return tp.OpLayout(buf[op][sl], eb, strides), sl

        turn = {}
        d_labels = plan.ulabels["D"]
        d_order = _memory_order(src["d"].view) if d_host else None

        def block_slices(ranges):
            return tuple(slice(ranges[lab][0], ranges[lab][0] + ranges[lab][1]) for lab in d_labels)

        def finish_block(seq, slot, ranges, timeout):
            self.engine.wait(seq, timeout)
            shape = [ranges[lab][1] for lab in d_labels]
            raw = self.engine.read_tensor(buf["d"][slot], "<i4", math.prod(shape))
            vals = raw.reshape([shape[a] for a in d_order]).transpose(np.argsort(d_order))
            if run.epilogue:
                v = run.alpha * vals.astype(np.int64)
                if run.beta:
                    v = v + run.c_values[block_slices(ranges)].astype(np.int64)
                vals = _wrap32(v)
            src["d"].view[block_slices(ranges)] = vals

        outer = [lab for lab in labels if lab.role == tp.H]
        first_role, second_role = (tp.N, tp.M) if blk.order == "NM" else (tp.M, tp.N)
        mn = [lab for lab in labels if lab.role == first_role] + [lab for lab in labels if lab.role == second_role]
        ks = [lab for lab in labels if lab.role == tp.K]
        d_slot = 0
        for out_ranges in tp.block_ranges(outer + mn, block):
            # D (and C') of this output block
            if d_host:
                if len(pending) >= len(buf["d"]):
                    finish_block(*pending.pop(0), timeout)
                shape = [out_ranges[lab][1] for lab in d_labels]
                d_layout = tp.OpLayout(buf["d"][d_slot], 4, dict(zip(d_labels, _packed_strides(shape, d_order))))
            else:
                d_layout, _ = layout_of("d", src["d"], out_ranges)
            c_first, d_is_c = None, False
            if run.c_dev is not None:
                if c_host:
                    cv = (run.c_values if run.c_dev == "host-scaled" else run.c_dev.view)[block_slices(out_ranges)]
                    if d_host:                         # C' goes where D accumulates: C == D in place
                        self.engine.write_tensor(d_layout.base, np.ascontiguousarray(cv.transpose(d_order)))
                        c_first, d_is_c = d_layout, True
                    else:
                        wait_slot("c", d_slot)
                        order = _memory_order(cv)
                        shape = [out_ranges[lab][1] for lab in d_labels]
                        self.engine.write_tensor(buf["c"][d_slot], np.ascontiguousarray(cv.transpose(order)))
                        c_first = tp.OpLayout(buf["c"][d_slot], 4, dict(zip(d_labels, _packed_strides(shape, order))))
                else:
                    c_first, _ = layout_of("c", run.c_dev, out_ranges)
                    d_is_c = c_first.base == d_layout.base and c_first.strides == d_layout.strides
            seq = None
            for ki, k_ranges in enumerate(tp.block_ranges(ks, block)):
                ranges = {**out_ranges, **k_ranges}
                a_layout, a_slot = layout_of("a", src["a"], ranges)
                b_layout, b_slot = layout_of("b", src["b"], ranges)
                layouts = {"a": a_layout, "b": b_layout, "d": d_layout}
                if ki == 0 and c_first is not None and not d_is_c:
                    layouts["c"] = c_first
                dev_loops, host_loops = tp.engine_loops(labels, ranges, layouts, self.engine.loops)
                if self.descriptors == 0:
                    run.device_steps.extend(tp.loops_text(dev_loops, host_loops))
                if ki == 0:
                    c_now, c_is_d = c_first, d_is_c
                else:                                  # later K blocks accumulate onto D
                    c_now, c_is_d = d_layout, True
                for desc, reads_d in tp.block_descriptors(dev_loops, host_loops, layouts, c_now, c_is_d):
                    seq = self.engine.submit(dataclasses.replace(desc, fence=self.first or reads_d))
                    self.first = False
                    self.descriptors += 1
                if a_slot is not None:
                    last_seq[("a", a_slot)] = seq
                if b_slot is not None:
                    last_seq[("b", b_slot)] = seq
            if c_host and not d_host:
                last_seq[("c", d_slot)] = seq
            if d_host:
                pending.append((seq, d_slot, dict(out_ranges)))
                d_slot = (d_slot + 1) % len(buf["d"])

        def finish(timeout):
            while pending:
                finish_block(*pending.pop(0), timeout)
            self.engine.wait(None, timeout)

        return finish


# -- explain ---------------------------------------------------------------------------------------------------

def _fmt_label(lab):
    return str(lab)


def _explain(plan, info: RunInfo) -> str:
    eng = _state(plan.dev).engine
    cfg = plan.dev.config
    idx = plan.idx
    def sig(name):
        return ",".join(map(_fmt_label, idx[name]))
    lines = []
    c_part = f" + β·C[{sig('C')}]" if plan.infos["C"] is not None else ""
    lines.append(f"D[{sig('D')}] = α·A[{sig('A')}]·B[{sig('B')}]{c_part}   (int{eng.width} inputs, int32 "
                 f"accumulation, modulo 2^32)")
    lines.append(f"device: {eng.rows}×{eng.cols} engine, {eng.loops} loops per descriptor, engine tiles "
                 f"{eng.tile_m}×{eng.tile_n} (M×N), K chunk {eng.chunk_k}, {eng.tensor_bytes:,} bytes of "
                 f"tensor memory, link {cfg.baud / 1e6:g} Mbaud")
    lines.append("labels:")
    for lab in plan.labels:
        strides = []
        for name in "ABCD":
            inf = plan.infos[name]
            if inf is not None and lab.name in idx[name]:
                st = tp.unique_strides(idx[name], inf.strides)[lab.name]
                rep = idx[name].count(lab.name)
                strides.append(f"{name} {st}" + (f" (diagonal of {rep} modes)" if rep > 1 else ""))
        where = "host loop (one descriptor per index)" if lab.role == tp.H else \
            f"engine loop, role {lab.role}" + (" with a zero stride for the other input" if lab.reduced else "")
        lines.append(f"  {_fmt_label(lab.name)!s:>4}  extent {lab.extent:<6} {lab.text:<22} → {where}; "
                     f"strides {', '.join(strides)}")
    lines.append("runs on the host:")
    for step in info.host_steps or ["nothing but uploads and downloads"]:
        lines.append(f"  - {step}")
    blk = info.blocking
    lines.append("runs on the device:")
    for step in info.device_steps:
        lines.append(f"  - {step}")
    if blk is None:
        lines.append("  - no engine pass")
        return "\n".join(lines)
    sizes = {role: math.prod(blk.block[lab.name] for lab in plan.labels if lab.role == role)
             for role in (tp.M, tp.N, tp.K)}
    lines.append(f"  - {blk.descriptors:,} descriptor(s) of up to M {sizes[tp.M]} × N {sizes[tp.N]} × K "
                 f"{sizes[tp.K]}; the engine cuts each into {eng.tile_m}×{eng.tile_n} tiles held in the "
                 f"accumulators across the whole K loop, K in chunks of {eng.chunk_k} (double-buffered)")
    if blk.blocks == 1:
        lines.append(f"planner: one block — every operand fits in tensor memory ({blk.buffer_bytes:,} bytes "
                     f"of buffers)")
    else:
        cut = ", ".join(f"{_fmt_label(lab.name)} {blk.block[lab.name]}/{lab.extent}" for lab in plan.labels
                        if blk.block[lab.name] != lab.extent)
        lines.append(f"planner: tiled into {blk.blocks:,} blocks (H {blk.counts[tp.H]} × M {blk.counts[tp.M]} × "
                     f"N {blk.counts[tp.N]} × K {blk.counts[tp.K]}; cut labels {cut}); order "
                     f"{'M outer, N inner' if blk.order == 'MN' else 'N outer, M inner'}, K innermost with the "
                     f"D block resident; double-buffered slots, {blk.buffer_bytes:,} bytes of buffers; best of "
                     f"{blk.candidates} fitting candidates ranked by the traffic model")
    traffic = ", ".join(f"{k.upper() if k != 'desc' else 'descriptors'} {v:,} B" for k, v in blk.traffic.items())
    link_s, dev_s = tp.Model.seconds(blk, cfg.baud, cfg.clock_hz)
    lines.append(f"expected traffic: {traffic}; {blk.wire_bytes:,} B with framing ≈ {link_s * 1e3:,.1f} ms at "
                 f"{cfg.baud / 1e6:g} Mbaud; engine ≈ {blk.cycles:,} cycles ({dev_s * 1e3:,.2f} ms at "
                 f"{cfg.clock_hz / 1e6:g} MHz); transfer share ≈ {link_s / max(link_s + dev_s, 1e-12):.0%}")
    if plan.last is info and info.link_bytes:
        lines.append(f"last execution: {info.descriptors:,} descriptors, {info.link_bytes:,} bytes over the link, "
                     f"{info.seconds * 1e3:,.1f} ms wall")
    return "\n".join(lines)


# -- einsum ---------------------------------------------------------------------------------------------------

def _parse(subscripts):
    s = subscripts.replace(" ", "")
    if "." in s:
        raise TappNotImplemented("einsum: ellipsis ('...') is not supported; name every mode")
    if "->" in s:
        ins, out = s.split("->", 1)
    else:
        ins, out = s, None
    ops = ins.split(",")
    if len(ops) != 2:
        raise ValueError(f"einsum takes exactly two operands (A and B), the subscripts name {len(ops)}")
    for part in ops + ([out] if out is not None else []):
        if not all(ch.isalpha() for ch in part):
            raise ValueError(f"einsum subscripts must be letters, not {part!r}")
    if out is None:   # numpy's implicit mode: labels used once, alphabetically
        counts = {}
        for ch in ops[0] + ops[1]:
            counts[ch] = counts.get(ch, 0) + 1
        out = "".join(sorted(ch for ch, n in counts.items() if n == 1))
    return ops[0], ops[1], out


def einsum(dev, subscripts, A, B, C=None, alpha=1, beta=0, *, out=None):
    """numpy-style `einsum("abk,kc->abc", A, B)` on the device: int8 A, B (numpy arrays or DeviceTensors)
    → int32 D = alpha·Σ A·B + beta·C (as in TAPP, C is read only when beta ≠ 0). Returns a new numpy
    array, or `out` (a numpy int32 array or a DeviceTensor, which keeps D on the device)."""
    ia, ib, io = _parse(subscripts)

    def info_of(x, name):
        if isinstance(x, DeviceTensor):
            return x.info
        x = np.asarray(x)
        return TensorInfo.of(x)

    A = A if isinstance(A, DeviceTensor) else np.asarray(A)
    B = B if isinstance(B, DeviceTensor) else np.asarray(B)
    a_info, b_info = info_of(A, "A"), info_of(B, "B")
    for name, info, sub in (("A", a_info, ia), ("B", b_info, ib)):
        if info.nmode != len(sub):
            raise ValueError(f"einsum: {name} has {info.nmode} modes but subscripts {sub!r} name {len(sub)}")
    ext = {}
    for sub, info in ((ib, b_info), (ia, a_info)):
        ext.update(zip(sub, info.extents))
    shape = tuple(ext.get(ch, 0) for ch in io)
    if out is None:
        D = np.zeros(shape, np.int32)
    else:
        D = out
    d_info = info_of(D, "out")
    c_info = None
    if C is not None:
        C = C if isinstance(C, DeviceTensor) else np.asarray(C)
        c_info = info_of(C, "C")
    plan = Plan(dev, a_info, ia, b_info, ib, c_info, io if C is not None else None, d_info, io)
    return plan.execute(alpha, A, B, beta, C, D)
