"""Symmetric per-tensor int8 quantization: the bridge from float tensors to the int8 contraction engine.

    from tensornic.quantize import quantize_int8, dequantize, dequantize_product
    qa, sa = quantize_int8(a)                  # a ≈ qa · sa, qa int8 in [-127, 127]
    qb, sb = quantize_int8(b)
    d = dev.einsum("ik,kj->ij", qa, qb)        # exact int32 (modulo 2^32)
    approx = dequantize_product(d, sa, sb)     # ≈ a @ b, float64

Rules: scale = max|x| / 127 (1.0 for an all-zero tensor), q = clip(round_half_even(x / scale), -127, 127).
-128 is never produced, so the range is symmetric and negating a quantized tensor stays exact. The
round-trip error of each element is at most scale / 2. NaN or infinite inputs raise ValueError.
"""

import numpy as np

__all__ = ["quantize_int8", "dequantize", "dequantize_product", "QMAX"]

#: Largest magnitude a quantized value takes.
QMAX = 127


def quantize_int8(x, scale=None):
    """Return (q, scale): `q` an int8 array with x ≈ q · scale. `scale` may be given (a positive float,
    e.g. a calibration value); values beyond ±127·scale saturate."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"quantize_int8 takes real numbers, not {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("quantize_int8: the tensor holds NaN or infinite values")
    if scale is None:
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        scale = peak / QMAX if peak > 0 else 1.0
    scale = float(scale)
    if not scale > 0 or not np.isfinite(scale):
        raise ValueError(f"quantize_int8: scale must be a positive finite number, not {scale}")
    q = np.clip(np.rint(x / scale), -QMAX, QMAX).astype(np.int8)
    return q, scale


def dequantize(q, scale):
    """Float64 values of a quantized tensor (int8 or int32): q · scale."""
    return np.asarray(q).astype(np.float64) * float(scale)


def dequantize_product(d, scale_a, scale_b):
    """Float64 values of an int32 contraction result D = Σ qa·qb of two quantized tensors:
    D · scale_a · scale_b (meaningful as long as the int32 sums did not wrap: |D| < 2^31)."""
    return np.asarray(d).astype(np.float64) * (float(scale_a) * float(scale_b))
