"""TFLM's int8 LOGISTIC and TANH, computed at build time for all 256 codes.

An int8 LOGISTIC or TANH maps each input code to one output code, so the
lowering stores that map as a 256-byte table and the firmware looks it up
(tg_lut_s8): about 0.8 KB of fixed-point code leaves the firmware, and a
lookup is a few instructions per element where the fixed-point evaluation
took over a hundred.  The table is TFLM's reference arithmetic
(reference_integer_ops::Logistic / Tanh over gemmlowp's fixedpoint.h:
MultiplyByQuantizedMultiplier into Q4.27, exp on [-1/4, 0) by a polynomial
and exp(-2^k) factors, 1 / (1 + x) by three Newton-Raphson steps), in exact
Python integers, wrapping where the int32 arithmetic wraps.  Tests compare
every code with the tflite_micro interpreter.
"""

from __future__ import annotations

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ONE_Q0 = INT32_MAX                          # the largest Q0.31 value stands for 1.0
EXP_MINUS_POW2 = (1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242)


def wrap(x: int) -> int:
    """Two's-complement int32 (the reference's int32 additions wrap)."""
    return (x + (1 << 31)) % (1 << 32) - (1 << 31)


def high_mul(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul."""
    if a == b == INT32_MIN:
        return INT32_MAX
    p = a * b
    nudge = (1 << 30) if p >= 0 else 1 - (1 << 30)
    q = abs(p + nudge) >> 31                # C's division truncates toward zero
    return q if p + nudge >= 0 else -q


def divide_by_pot(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT (ties away from zero)."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def requantize(x: int, multiplier: int, shift: int) -> int:
    """TFLite MultiplyByQuantizedMultiplier (double rounding)."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return divide_by_pot(high_mul(wrap(x * (1 << left)), multiplier), right)


def sat_shl(x: int, e: int) -> int:
    """x * 2^e saturated to int32 (SaturatingRoundingMultiplyByPOT, e > 0)."""
    limit = (1 << (31 - e)) - 1
    if x > limit:
        return INT32_MAX
    if x < -limit:
        return INT32_MIN
    return wrap(x << e)


def _exp_quarter(a: int) -> int:
    """exp(a) for a in [-1/4, 0), Q0.31."""
    exp_minus_one_eighth, one_third = 1895147668, 715827883
    x = wrap(a + (1 << 28))
    x2 = high_mul(x, x)
    x3 = high_mul(x2, x)
    x4 = high_mul(x2, x2)
    poly = divide_by_pot(wrap(high_mul(wrap(divide_by_pot(x4, 2) + x3), one_third) + x2), 1)
    return wrap(exp_minus_one_eighth + high_mul(exp_minus_one_eighth, wrap(x + poly)))


def exp_on_negative_values(a: int, integer_bits: int) -> int:
    """exp(a) for a <= 0 with `integer_bits` integer bits, Q0.31."""
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod = wrap((a & (one_quarter - 1)) - one_quarter)
    result = _exp_quarter(sat_shl(a_mod, integer_bits))
    remainder = wrap(a_mod - a)
    for e in range(-2, 5):
        if integer_bits > e and remainder & (1 << (fractional_bits + e)):
            result = high_mul(result, EXP_MINUS_POW2[e + 2])
    return ONE_Q0 if a == 0 else result


def _reciprocal_q2(half_denominator: int) -> int:
    x = wrap(1515870810 + high_mul(half_denominator, -1010580540))
    for _ in range(3):
        one_minus = wrap((1 << 29) - high_mul(half_denominator, x))
        x = wrap(x + sat_shl(high_mul(x, one_minus), 2))
    return x


def _half_sum(a: int, b: int) -> int:
    """(a + b) / 2 rounded half away from zero."""
    s = a + b
    return (s + 1) // 2 if s >= 0 else -((-s + 1) // 2)


def logistic_q4(a: int) -> int:
    """gemmlowp logistic: Q4.27 in, Q0.31 out."""
    if a == 0:
        return 1 << 30
    pos = sat_shl(_reciprocal_q2(_half_sum(exp_on_negative_values(-abs(a), 4), ONE_Q0)), 1)
    return pos if a > 0 else wrap(ONE_Q0 - pos)


def tanh_q4(a: int) -> int:
    """gemmlowp tanh: Q4.27 in, Q0.31 out (exp(-2|a|) read as a Q5.26 value)."""
    if a == 0:
        return 0
    x = _reciprocal_q2(_half_sum(exp_on_negative_values(-abs(a), 5), ONE_Q0))
    t = sat_shl(wrap(x - (1 << 29)), 2)
    return -t if a < 0 else t


def sigmoid_table(opcode: str, zero_point: int, radius: int, multiplier: int,
                  shift: int) -> list[int]:
    """Output code of every input code -128..127 (index code + 128)."""
    out = []
    for q in range(-128, 128):
        x = q - zero_point
        if x <= -radius:
            y = -128
        elif x >= radius:
            y = 127
        else:
            x_q4 = requantize(x, multiplier, shift)
            if opcode == "LOGISTIC":      # Q0.31 -> 1/256 steps, zero point -128
                y = divide_by_pot(logistic_q4(x_q4), 23) - 128
            else:                         # Q0.31 -> 1/128 steps, zero point 0
                y = divide_by_pot(tanh_q4(x_q4), 24)
            y = min(max(y, -128), 127)
        out.append(y)
    return out
