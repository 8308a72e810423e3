"""The one table of numerical tolerances. A looser bound carries its reason beside it."""

# float32 on CPU against the reference library: the parity bar.
FP32_ATOL = 1e-4

# float16/bfloat16 on CPU: both sides round every op to 10 (7) mantissa bits, in different orders
# (our fused SDPA vs. the reference's), so compare against the reference's own half-precision error.
FP16_ATOL = 2e-2
BF16_ATOL = 1e-1
