"""The numeric formats of the NIC datapath, described once (pure Python, no Amaranth, no numpy).

Gateware (`rtl/fp32_add.py`, `rtl/bf16.py`, `rtl/mxint8.py`), the golden models (`tensornic.formats`) and the
host all import these names; a format detail is changed here or nowhere. docs/formats.md explains them.
"""

__all__ = [
    "FP32_BITS", "FP32_EXP_BITS", "FP32_FRAC_BITS", "FP32_EXP_BIAS", "FP32_EXP_MAX", "FP32_SIGN_BIT",
    "FP32_CANONICAL_NAN", "FP32_POS_INF", "FP32_NEG_INF",
    "BF16_BITS", "BF16_DROPPED_BITS", "BF16_QUIET_NAN",
    "MX_BLOCK_SIZES", "MX_DEFAULT_BLOCK", "MX_SCALE_BITS", "MX_SCALE_BIAS", "MX_SCALE_MIN_EXP",
    "MX_SCALE_MAX_EXP", "MX_SCALE_NAN", "MX_ELEMENT_BITS", "MX_ELEMENT_FRAC_BITS", "MX_ELEMENT_MAX",
    "mx_block_bytes",
]

# --- IEEE 754 binary32 ---------------------------------------------------------------------------------------

FP32_BITS = 32
FP32_EXP_BITS = 8
FP32_FRAC_BITS = 23
FP32_EXP_BIAS = 127
#: The all-ones exponent field: Inf (fraction 0) or NaN (fraction ≠ 0).
FP32_EXP_MAX = (1 << FP32_EXP_BITS) - 1
FP32_SIGN_BIT = 1 << 31
#: Every NaN an operation produces (RISC-V convention, SoftFloat's RISC-V specialization): positive, quiet,
#: payload zero.
FP32_CANONICAL_NAN = 0x7FC0_0000
FP32_POS_INF = 0x7F80_0000
FP32_NEG_INF = 0xFF80_0000

# --- bfloat16: the upper half of a binary32 ------------------------------------------------------------------

BF16_BITS = 16
#: Low binary32 bits that FP32 → BF16 rounds away.
BF16_DROPPED_BITS = FP32_BITS - BF16_BITS
#: What FP32 → BF16 makes of any NaN, OR-ed with the input's sign bit (0x8000): the quiet NaN, payload zero
#: (ml_dtypes' rule).
BF16_QUIET_NAN = 0x7FC0

# --- OCP Microscaling MXINT8 (OCP MX v1.0) -------------------------------------------------------------------

#: Block sizes the gateware and the models accept; the standard's is 32.
MX_BLOCK_SIZES = (16, 32)
MX_DEFAULT_BLOCK = 32
#: The shared scale: an E8M0 byte, 2**(byte - MX_SCALE_BIAS); MX_SCALE_NAN marks a block that held Inf/NaN.
MX_SCALE_BITS = 8
MX_SCALE_BIAS = 127
MX_SCALE_MIN_EXP = -127
MX_SCALE_MAX_EXP = 127
MX_SCALE_NAN = 0xFF
#: Elements: two's-complement int8 q standing for q * 2**-MX_ELEMENT_FRAC_BITS (times the block's scale),
#: |q| <= MX_ELEMENT_MAX (-128 is never produced).
MX_ELEMENT_BITS = 8
MX_ELEMENT_FRAC_BITS = 6
MX_ELEMENT_MAX = 127


def mx_block_bytes(block: int = MX_DEFAULT_BLOCK) -> int:
    """Bytes one MXINT8 block takes on the wire: the scale byte, then `block` element bytes."""
    return MX_SCALE_BITS // 8 + block * MX_ELEMENT_BITS // 8
