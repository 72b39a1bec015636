"""Golden models of the NIC's number formats: FP32 addition, BF16 and OCP MXINT8 (numpy, bit-exact).

These functions *define* the formats for the host, the emulator and the NIC gateware; the gateware is tested
against them bit for bit, and they are tested against independent references (SoftFloat, ml_dtypes) and
hand-worked cases. They are written for clarity, not speed, and share nothing with the RTL but the constants
of `tensornic.rtl.format_constants`. docs/formats.md states the rules in words.

- `fp32_add(a, b)`: IEEE 754 binary32 addition, round-to-nearest-even, subnormals kept, and the RISC-V NaN
  rule: every NaN result is the canonical quiet NaN 0x7FC00000.
- `bf16_encode(x)` / `bf16_decode(u)`: FP32 → BF16 with round-to-nearest-even (NaN → quiet NaN of the same
  sign, 0x7FC0 | sign); BF16 → FP32 exactly.
- `mxint8_encode(x, block)` / `mxint8_decode(scales, elements, block)`: OCP MX v1.0 MXINT8 with one E8M0
  scale per block; `mxint8_to_wire` / `mxint8_from_wire`: the wire layout (scale byte, then the elements).
"""

import numpy as np

from .rtl.format_constants import (
    BF16_DROPPED_BITS, BF16_QUIET_NAN, FP32_CANONICAL_NAN, FP32_SIGN_BIT, MX_BLOCK_SIZES, MX_DEFAULT_BLOCK,
    MX_ELEMENT_FRAC_BITS, MX_ELEMENT_MAX, MX_SCALE_BIAS, MX_SCALE_MAX_EXP, MX_SCALE_MIN_EXP, MX_SCALE_NAN,
    mx_block_bytes,
)

__all__ = ["fp32_add", "bf16_encode", "bf16_decode", "mxint8_encode", "mxint8_decode", "mxint8_to_wire",
           "mxint8_from_wire", "fp32_bits", "fp32_from_bits"]


# --- argument checks -----------------------------------------------------------------------------------------

def _array(value, dtype, what):
    """`value` as an ndarray of exactly `dtype` (no silent conversion: float64 → float32 would round)."""
    array = np.asarray(value)
    if array.dtype != np.dtype(dtype):
        raise TypeError(f"{what} must be a numpy array of {np.dtype(dtype).name}, not {array.dtype.name}")
    return array


def _block_size(block):
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or int(block) not in MX_BLOCK_SIZES:
        raise ValueError(f"block must be one of {MX_BLOCK_SIZES}, not {block!r}")
    return int(block)


def _vector(array, what):
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, not of shape {array.shape}")
    return array


def fp32_bits(x) -> np.ndarray:
    """The binary32 encodings (uint32) of a float32 array."""
    return _array(x, np.float32, "x").view(np.uint32)


def fp32_from_bits(u) -> np.ndarray:
    """float32 values from their binary32 encodings (uint32)."""
    return _array(u, np.uint32, "u").view(np.float32)


# --- FP32 addition -------------------------------------------------------------------------------------------

def fp32_add(a, b) -> np.ndarray:
    """a + b elementwise for float32 arrays (numpy broadcasting), with IEEE 754 round-to-nearest-even.

    The magnitude comes from numpy's float32 addition, which is IEEE's (subnormals included; numpy does not
    flush them). The rules where numpy's answer is not ours are applied explicitly:
    - a NaN result is always 0x7FC00000 (numpy propagates an operand's payload and sign);
    - an exact zero result is −0 only when both operands are −0 (x + (−x) = +0 in this rounding mode).
    """
    a = _array(a, np.float32, "a")
    b = _array(b, np.float32, "b")
    with np.errstate(all="ignore"):
        total = np.add(a, b, dtype=np.float32)
    bits = np.array(total, dtype=np.float32).view(np.uint32).copy()
    bits = np.where(np.isnan(total), np.uint32(FP32_CANONICAL_NAN), bits)
    both_negative = np.signbit(a) & np.signbit(b)
    zero_sign = np.where(both_negative, np.uint32(FP32_SIGN_BIT), np.uint32(0))
    bits = np.where(total == 0, zero_sign, bits).astype(np.uint32)
    return bits.view(np.float32)


# --- BF16 ----------------------------------------------------------------------------------------------------

def bf16_encode(x) -> np.ndarray:
    """float32 → BF16 bit patterns (uint16), round to nearest, ties to even; overflow rounds to ±Inf.

    Rounding on the integer encoding: add half a BF16 ulp minus one, plus the kept LSB (so an exact tie goes
    to the even neighbour), then drop the low 16 bits. A carry out of the fraction moves the exponent up,
    which is exactly right (up to Inf). NaN → 0x7FC0 with the input's sign.
    """
    bits = fp32_bits(x).astype(np.uint64)
    keep_lsb = (bits >> BF16_DROPPED_BITS) & 1
    half_minus_one = (1 << (BF16_DROPPED_BITS - 1)) - 1
    rounded = (bits + half_minus_one + keep_lsb) >> BF16_DROPPED_BITS
    nan = np.isnan(np.asarray(x))
    quiet = ((bits >> BF16_DROPPED_BITS) & 0x8000) | BF16_QUIET_NAN
    return np.where(nan, quiet, rounded).astype(np.uint16)


def bf16_decode(u) -> np.ndarray:
    """BF16 bit patterns (uint16) → float32, exactly (the pattern becomes the upper half; NaNs unchanged)."""
    u = _array(u, np.uint16, "u")
    return (u.astype(np.uint32) << BF16_DROPPED_BITS).view(np.float32)


# --- MXINT8 --------------------------------------------------------------------------------------------------

def mxint8_encode(x, block: int = MX_DEFAULT_BLOCK, rounding: str = "nearest"):
    """float32 vector → (scales: uint8 per block, elements: int8 per value), OCP MX v1.0 MXINT8.

    `rounding="truncate"` models, for comparison only, the block format of Ma et al.'s NIC: the scaled
    two's-complement value is truncated (an arithmetic shift, i.e. floor) instead of rounded; the gateware
    always rounds to nearest even.

    Per block of `block` consecutive values V: e = floor(log2(max |V|)) clamped to [−127, 127] (−127 for an
    all-zero block); scale byte e + 127; q = round-half-to-even(V · 2**(6 − e)) clamped to [−127, 127].
    A block holding Inf or NaN gets scale 0xFF and elements 0. All arithmetic here is exact in float64
    (scaling by a power of two, then one rounding).
    """
    block = _block_size(block)
    if rounding not in ("nearest", "truncate"):
        raise ValueError(f"rounding={rounding!r}: use 'nearest' (the NIC's) or 'truncate' (for comparison)")
    x = _vector(_array(x, np.float32, "x"), "x")
    if x.size % block:
        raise ValueError(f"x has {x.size} values, not a multiple of the block size {block}")
    with np.errstate(invalid="ignore"):     # a signalling NaN stays a NaN; nothing else can go wrong here
        values = x.astype(np.float64).reshape(-1, block)
    finite = np.isfinite(values).all(axis=1)
    safe = np.where(finite[:, None], values, 0.0)
    amax = np.abs(safe).max(axis=1)
    _, exponent = np.frexp(amax)                  # amax = m · 2**exponent, m in [0.5, 1)
    e = np.where(amax > 0, exponent - 1, MX_SCALE_MIN_EXP)
    e = np.clip(e, MX_SCALE_MIN_EXP, MX_SCALE_MAX_EXP)
    scaled = np.ldexp(safe, (MX_ELEMENT_FRAC_BITS - e)[:, None])
    rounded = np.rint(scaled) if rounding == "nearest" else np.floor(scaled)   # np.rint: ties to even
    q = np.clip(rounded, -MX_ELEMENT_MAX, MX_ELEMENT_MAX)
    q = np.where(finite[:, None], q, 0).astype(np.int8).reshape(-1)
    scales = np.where(finite, e + MX_SCALE_BIAS, MX_SCALE_NAN).astype(np.uint8)
    return scales, q


def mxint8_decode(scales, elements, block: int = MX_DEFAULT_BLOCK) -> np.ndarray:
    """(scales, elements) → float32: q · 2**(scale − 127 − 6), exact (subnormal results included);
    every element of a block with scale 0xFF is NaN (0x7FC00000)."""
    block = _block_size(block)
    scales = _vector(_array(scales, np.uint8, "scales"), "scales")
    elements = _vector(_array(elements, np.int8, "elements"), "elements")
    if elements.size != scales.size * block:
        raise ValueError(f"{scales.size} scales need {scales.size * block} elements at block size {block}, "
                         f"not {elements.size}")
    e = scales.astype(np.int64) - MX_SCALE_BIAS
    q = elements.astype(np.float64).reshape(-1, block)
    values = np.ldexp(q, (e - MX_ELEMENT_FRAC_BITS)[:, None])         # exact in float64 and in float32
    values = np.where((scales == MX_SCALE_NAN)[:, None], np.nan, values)
    with np.errstate(over="ignore"):      # only q = −128 (never produced) at scale 254 overflows: −Inf
        out = values.astype(np.float32).reshape(-1)
    bits = out.view(np.uint32)
    bits[np.isnan(out)] = FP32_CANONICAL_NAN
    return out


def mxint8_to_wire(scales, elements, block: int = MX_DEFAULT_BLOCK) -> bytes:
    """The wire bytes of MXINT8 blocks: for each block its scale byte, then its `block` element bytes."""
    block = _block_size(block)
    scales = _vector(_array(scales, np.uint8, "scales"), "scales")
    elements = _vector(_array(elements, np.int8, "elements"), "elements")
    if elements.size != scales.size * block:
        raise ValueError(f"{scales.size} scales need {scales.size * block} elements, not {elements.size}")
    rows = np.concatenate([scales[:, None], elements.view(np.uint8).reshape(-1, block)], axis=1)
    return rows.tobytes()


def mxint8_from_wire(data: bytes, block: int = MX_DEFAULT_BLOCK):
    """Inverse of `mxint8_to_wire`: (scales, elements) from wire bytes."""
    block = _block_size(block)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    size = mx_block_bytes(block)
    if len(data) % size:
        raise ValueError(f"{len(data)} bytes is not a whole number of {size}-byte blocks")
    rows = np.frombuffer(bytes(data), dtype=np.uint8).reshape(-1, size)
    return rows[:, 0].copy(), rows[:, 1:].reshape(-1).view(np.int8).copy()
