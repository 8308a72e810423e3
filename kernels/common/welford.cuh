// Welford moments shared by the normalization kernels: statistics that stay accurate in fp32
// where a raw sum of squares would cancel.
#pragma once

namespace nd::kernels::detail {

// count, mean, and M2 = sum of squared deviations from the mean. Merging keeps fp32 accurate
// where a raw sum of squares would cancel (|mean| >> std over millions of elements).
struct Moments {
  float count;
  float mean;
  float m2;
};

// Ref: Chan, Golub, LeVeque, "Algorithms for computing the sample variance" (1983), eq. 2.1b.
__device__ inline Moments merge(const Moments& a, const Moments& b) {
  const float count = a.count + b.count;
  if (count == 0.f) return a;
  const float delta = b.mean - a.mean;
  const float b_share = b.count / count;
  return {count, a.mean + delta * b_share, a.m2 + b.m2 + delta * delta * a.count * b_share};
}

// Moments of a handful of values, two-pass (exact enough, no division but by a power of 2).
template <int kVec>
__device__ inline Moments moments_of(const float (&x)[kVec]) {
  float sum = 0.f;
#pragma unroll
  for (int e = 0; e < kVec; ++e) sum += x[e];
  const float mean = sum / kVec;
  float m2 = 0.f;
#pragma unroll
  for (int e = 0; e < kVec; ++e) m2 += (x[e] - mean) * (x[e] - mean);
  return {static_cast<float>(kVec), mean, m2};
}

// Tree merge down to lane 0 (the other lanes end with partial results).
__device__ inline Moments warp_reduce(Moments m) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const Moments other = {__shfl_down_sync(0xffffffffu, m.count, offset),
                           __shfl_down_sync(0xffffffffu, m.mean, offset),
                           __shfl_down_sync(0xffffffffu, m.m2, offset)};
    m = merge(m, other);
  }
  return m;
}

}  // namespace nd::kernels::detail
