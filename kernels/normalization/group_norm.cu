// GroupNorm (+ per-(n, c) add, + SiLU); see nd_kernels/normalization.h for the contract.
//
// A group (n, g) is cg = C / G channels times H * W positions; in the VAE decoder that is up to
// 4M elements, so one block per group would leave most of the GPU idle. Three launches instead:
//   1. group_stats_kernel: grid (N * G, chunks); each block reduces one contiguous chunk of its
//      group's elements to Welford moments (count, mean, M2) in the workspace.
//   2. group_finalize_kernel: one block per group merges its chunks' moments (Chan et al.) into
//      mean and 1 / sqrt(var + eps).
//   3. group_normalize_kernel: the same grid as 1; normalises, applies gamma/beta and SiLU.
// The group's elements are enumerated by a group-local index i in memory order: NCHW i = c * HW
// + s (contiguous), NHWC i = s * cg + c (runs of cg channels, C apart). Threads move kVec
// elements at a time; kVec divides the contiguous run (HW or cg), so a vector never straddles a
// channel (NCHW) or a position (NHWC).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "common/element_access.cuh"
#include "common/welford.cuh"
#include "nd_kernels/normalization.h"

namespace nd::kernels {
namespace {

using namespace detail;

constexpr int kThreads = 256;
constexpr int kTargetChunk = 8192;  // elements per block: 32 per thread, enough to hide latency
constexpr int kMaxChunks = 1024;    // bounds the finalize pass and the workspace
constexpr int64_t kMaxGroupElements = int64_t{1} << 30;  // group-local indices stay int

__device__ inline float silu(float x) { return x / (1.f + __expf(-x)); }

// The block's merged moments, valid in thread 0. Call once per kernel (one shared buffer).
__device__ inline Moments block_reduce(Moments m) {
  __shared__ Moments warp_results[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  m = warp_reduce(m);
  if (lane == 0) warp_results[warp] = m;
  __syncthreads();
  if (warp == 0) {
    m = lane < kThreads / 32 ? warp_results[lane] : Moments{0.f, 0.f, 0.f};
    m = warp_reduce(m);
  }
  return m;
}

// ---- group geometry ------------------------------------------------------------------------

template <typename T>
struct GroupArgs {
  const T* input;
  T* output;
  const T* gamma;  // nullable
  const T* beta;   // nullable
  const T* add;    // nullable, [N, C]
  int64_t channels;
  int hw;           // H * W
  int cg;           // channels per group
  int groups;       // G
  int span;         // elements per group, cg * hw
  int chunks;       // blocks per group
  int chunk_elems;  // elements per block, a multiple of the vector width
  float eps;
  bool silu;
};

template <bool kChannelsLast>
struct GroupIndexing {
  // Within a vector, consecutive elements are the same channel (NCHW) or the next one (NHWC).
  static constexpr int kChannelStep = kChannelsLast ? 1 : 0;

  int64_t channels;
  int hw;
  int cg;

  // Offset of group (n, g)'s first element (channel g * cg, position 0).
  __device__ int64_t group_offset(int64_t n, int64_t g) const {
    return kChannelsLast ? n * hw * channels + g * cg : (n * channels + g * cg) * hw;
  }

  // Group-local index i -> offset from the group's first element, and channel within the group.
  __device__ void locate(int i, int64_t& offset, int& channel) const {
    if constexpr (kChannelsLast) {
      const int position = i / cg;
      channel = i - position * cg;
      offset = static_cast<int64_t>(position) * channels + channel;
    } else {
      channel = i / hw;
      offset = i;
    }
  }
};

// This block's [begin, end) of its group's elements; empty for a trailing chunk past the end.
__device__ inline void chunk_range(int span, int chunk_elems, int& begin, int& end) {
  const int64_t first = static_cast<int64_t>(blockIdx.y) * chunk_elems;
  begin = static_cast<int>(first < span ? first : span);
  end = begin + chunk_elems < span ? begin + chunk_elems : span;
}

// ---- the three passes ----------------------------------------------------------------------

// Grid (N * G, chunks): moments of (input + add) over one chunk of group blockIdx.x.
template <typename T, int kVec, bool kChannelsLast>
__global__ void __launch_bounds__(kThreads) group_stats_kernel(const GroupArgs<T> a,
                                                               Moments* partials) {
  using Indexing = GroupIndexing<kChannelsLast>;
  const int64_t group_index = blockIdx.x, n = group_index / a.groups, g = group_index % a.groups;
  const Indexing indexing{a.channels, a.hw, a.cg};
  const T* x = a.input + indexing.group_offset(n, g);
  const T* add = a.add ? a.add + n * a.channels + g * a.cg : nullptr;
  int begin, end;
  chunk_range(a.span, a.chunk_elems, begin, end);

  Moments m{0.f, 0.f, 0.f};
  for (int i = begin + threadIdx.x * kVec; i < end; i += kThreads * kVec) {
    int64_t offset;
    int channel;
    indexing.locate(i, offset, channel);
    float v[kVec];
    load_vec<T, kVec>(x + offset, v);
    if (add) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) v[e] += to_float(add[channel + e * Indexing::kChannelStep]);
    }
    m = merge(m, moments_of<kVec>(v));
  }
  m = block_reduce(m);
  if (threadIdx.x == 0) partials[group_index * a.chunks + blockIdx.y] = m;
}

// Grid N * G: merges a group's chunk moments into (mean, 1 / sqrt(biased var + eps)).
__global__ void __launch_bounds__(kThreads) group_finalize_kernel(const Moments* partials,
                                                                  int chunks, float eps,
                                                                  float2* stats) {
  const int64_t group_index = blockIdx.x;
  Moments m{0.f, 0.f, 0.f};
  for (int c = threadIdx.x; c < chunks; c += kThreads) {
    m = merge(m, partials[group_index * chunks + c]);
  }
  m = block_reduce(m);
  if (threadIdx.x == 0) {
    const float variance = m.count > 0.f ? m.m2 / m.count : 0.f;
    stats[group_index] = make_float2(m.mean, rsqrtf(variance + eps));
  }
}

// Grid (N * G, chunks): output = [silu]((input + add - mean) * rstd * gamma + beta).
template <typename T, int kVec, bool kChannelsLast>
__global__ void __launch_bounds__(kThreads) group_normalize_kernel(const GroupArgs<T> a,
                                                                   const float2* stats) {
  using Indexing = GroupIndexing<kChannelsLast>;
  const int64_t group_index = blockIdx.x, n = group_index / a.groups, g = group_index % a.groups;
  const Indexing indexing{a.channels, a.hw, a.cg};
  const int64_t first = indexing.group_offset(n, g);
  const T* x = a.input + first;
  T* y = a.output + first;
  const int64_t first_channel = g * a.cg;
  const T* add = a.add ? a.add + n * a.channels : nullptr;
  const float2 stat = stats[group_index];  // (mean, rstd)
  int begin, end;
  chunk_range(a.span, a.chunk_elems, begin, end);

  for (int i = begin + threadIdx.x * kVec; i < end; i += kThreads * kVec) {
    int64_t offset;
    int channel;
    indexing.locate(i, offset, channel);
    float v[kVec];
    load_vec<T, kVec>(x + offset, v);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const int64_t c = first_channel + channel + e * Indexing::kChannelStep;
      float r = ((add ? v[e] + to_float(add[c]) : v[e]) - stat.x) * stat.y;
      if (a.gamma) r *= to_float(a.gamma[c]);
      if (a.beta) r += to_float(a.beta[c]);
      v[e] = a.silu ? silu(r) : r;
    }
    store_vec<T, kVec>(y + offset, v);
  }
}

// ---- host side -----------------------------------------------------------------------------

bool is_empty(const GroupNormParams& p) {
  return p.batch == 0 || p.channels == 0 || p.height == 0 || p.width == 0;
}

int64_t group_span(const GroupNormParams& p) {
  return p.channels / p.num_groups * p.height * p.width;
}

int chunks_per_group(int64_t span) {
  const int64_t chunks = (span + kTargetChunk - 1) / kTargetChunk;
  return static_cast<int>(chunks < 1 ? 1 : chunks > kMaxChunks ? kMaxChunks : chunks);
}

size_t round_up_16(size_t bytes) { return (bytes + 15) / 16 * 16; }

// Workspace: [N * G][chunks] Moments, then [N * G] float2 (mean, rstd).
size_t partials_bytes(int64_t groups_total, int chunks) {
  return round_up_16(static_cast<size_t>(groups_total) * chunks * sizeof(Moments));
}

cudaError_t check_arguments(const GroupNormParams& p) {
  if (p.type != ElementType::kFloat32 && p.type != ElementType::kFloat16 &&
      p.type != ElementType::kBFloat16) {
    return cudaErrorInvalidValue;
  }
  if (p.batch < 0 || p.channels < 0 || p.height < 0 || p.width < 0) return cudaErrorInvalidValue;
  if (p.num_groups <= 0 || p.channels % p.num_groups != 0) return cudaErrorInvalidValue;
  if (!std::isfinite(p.eps) || p.eps < 0.f) return cudaErrorInvalidValue;
  if (is_empty(p)) return cudaSuccess;
  if (!p.input || !p.output) return cudaErrorInvalidValue;
  if (reinterpret_cast<uintptr_t>(p.workspace) % 16 != 0) return cudaErrorInvalidValue;
  if (p.height * p.width > kMaxGroupElements || group_span(p) > kMaxGroupElements ||
      p.batch > INT_MAX / p.num_groups) {
    return cudaErrorNotSupported;
  }
  return cudaSuccess;
}

// Widest vector (at most 16 bytes) that divides the contiguous run and keeps input and output
// accesses aligned.
template <typename T>
int vector_width(const GroupNormParams& p, int64_t hw, int64_t cg) {
  const int64_t run = p.channels_last ? cg : hw;
  for (int vec = 16 / static_cast<int>(sizeof(T)); vec > 1; vec /= 2) {
    const uintptr_t bytes = vec * sizeof(T);
    if (run % vec == 0 && reinterpret_cast<uintptr_t>(p.input) % bytes == 0 &&
        reinterpret_cast<uintptr_t>(p.output) % bytes == 0) {
      return vec;
    }
  }
  return 1;
}

template <typename T, int kVec, bool kChannelsLast>
cudaError_t launch_passes(const GroupArgs<T>& a, int64_t groups_total, Moments* partials,
                          float2* stats, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(groups_total), static_cast<unsigned>(a.chunks));
  group_stats_kernel<T, kVec, kChannelsLast><<<grid, kThreads, 0, stream>>>(a, partials);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  group_finalize_kernel<<<static_cast<unsigned>(groups_total), kThreads, 0, stream>>>(
      partials, a.chunks, a.eps, stats);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  group_normalize_kernel<T, kVec, kChannelsLast><<<grid, kThreads, 0, stream>>>(a, stats);
  return cudaGetLastError();
}

template <typename T, bool kChannelsLast>
cudaError_t dispatch_vector_width(int vec, const GroupArgs<T>& a, int64_t groups_total,
                                  Moments* partials, float2* stats, cudaStream_t stream) {
  if constexpr (sizeof(T) == 2) {  // 8 x 16-bit = 16 bytes; fp32 stops at 4
    if (vec == 8) {
      return launch_passes<T, 8, kChannelsLast>(a, groups_total, partials, stats, stream);
    }
  }
  if (vec == 4) return launch_passes<T, 4, kChannelsLast>(a, groups_total, partials, stats, stream);
  if (vec == 2) return launch_passes<T, 2, kChannelsLast>(a, groups_total, partials, stats, stream);
  return launch_passes<T, 1, kChannelsLast>(a, groups_total, partials, stats, stream);
}

template <typename T>
cudaError_t launch_typed(const GroupNormParams& p, void* workspace, cudaStream_t stream) {
  const int64_t hw = p.height * p.width, cg = p.channels / p.num_groups;
  const int64_t span = cg * hw, groups_total = p.batch * p.num_groups;
  const int vec = vector_width<T>(p, hw, cg);
  const int chunks = chunks_per_group(span);
  const int64_t per_chunk = (span + chunks - 1) / chunks;
  GroupArgs<T> a;
  a.input = static_cast<const T*>(p.input);
  a.output = static_cast<T*>(p.output);
  a.gamma = static_cast<const T*>(p.gamma);
  a.beta = static_cast<const T*>(p.beta);
  a.add = static_cast<const T*>(p.add);
  a.channels = p.channels;
  a.hw = static_cast<int>(hw);
  a.cg = static_cast<int>(cg);
  a.groups = static_cast<int>(p.num_groups);
  a.span = static_cast<int>(span);
  a.chunks = chunks;
  a.chunk_elems = static_cast<int>((per_chunk + vec - 1) / vec * vec);  // chunks start on vectors
  a.eps = p.eps;
  a.silu = p.apply_silu;
  auto* partials = static_cast<Moments*>(workspace);
  auto* stats = reinterpret_cast<float2*>(static_cast<char*>(workspace) +
                                          partials_bytes(groups_total, chunks));
  if (p.channels_last) {
    return dispatch_vector_width<T, true>(vec, a, groups_total, partials, stats, stream);
  }
  return dispatch_vector_width<T, false>(vec, a, groups_total, partials, stats, stream);
}

}  // namespace

size_t group_norm_workspace_bytes(const GroupNormParams& p) {
  if (check_arguments(p) != cudaSuccess || is_empty(p)) return 0;
  const int64_t groups_total = p.batch * p.num_groups;
  return partials_bytes(groups_total, chunks_per_group(group_span(p))) +
         static_cast<size_t>(groups_total) * sizeof(float2);
}

cudaError_t group_norm(const GroupNormParams& p, cudaStream_t stream) {
  cudaError_t err = check_arguments(p);
  if (err != cudaSuccess || is_empty(p)) return err;
  void* workspace = p.workspace;
  if (!workspace) {
    err = cudaMallocAsync(&workspace, group_norm_workspace_bytes(p), stream);
    if (err != cudaSuccess) return err;
  }
  switch (p.type) {
    case ElementType::kFloat32: err = launch_typed<float>(p, workspace, stream); break;
    case ElementType::kFloat16: err = launch_typed<__half>(p, workspace, stream); break;
    case ElementType::kBFloat16: err = launch_typed<__nv_bfloat16>(p, workspace, stream); break;
  }
  if (!p.workspace) {
    const cudaError_t free_err = cudaFreeAsync(workspace, stream);
    if (err == cudaSuccess) err = free_err;
  }
  return err;
}

}  // namespace nd::kernels
