// FlashAttention-2 forward on mma.sync tensor cores; see nd_kernels/attention.h for the contract.
//
// One block computes kBlockM query rows of one (batch, head). Its warps are arranged as
// kBlockM / 16 row groups of 16 query rows times kSplitD warps per row group; each warp owns the
// output columns [d_begin, d_begin + kSliceD) of its 16 rows, so the fp32 output accumulator
// stays in registers even for head_dim 512. Per K/V tile:
//   1. S = Q K^T: each warp multiplies its column slice of Q and K (a partial dot product); with
//      kSplitD > 1 the partial scores are summed through shared memory, in the same order in
//      every warp, so all warps of a row group see bit-identical scores and softmax statistics.
//   2. Online softmax on S in registers (running max and sum per row, rescaling the output).
//   3. O += P V with P taken straight from the score registers: an m16n8 accumulator pair has
//      the layout of an m16k16 A operand (FlashAttention-2's register reuse).
// Loads are cp.async: V_j streams in while S_j is computed, K_{j+1} while P_j V_j is.
//
// MMA fragment layout (PTX ISA, "mma.m16n8k16"): lane = 4 * g + t holds rows g and g + 8 and
// columns 2t, 2t + 1 of every 16x8 accumulator tile.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "nd_kernels/attention.h"

namespace nd::kernels {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// ---- tile shapes ---------------------------------------------------------------------------

template <int kHeadDimPadded, int kBlockM_, int kBlockN_, int kSplitD_>
struct TileConfig {
  static constexpr int kD = kHeadDimPadded;  // head_dim rounded up to a multiple of 16, zero-padded
  static constexpr int kBlockM = kBlockM_;   // query rows per block
  static constexpr int kBlockN = kBlockN_;   // keys per K/V tile
  static constexpr int kSplitD = kSplitD_;   // warps sharing 16 query rows, one column slice each
  static constexpr int kRowGroups = kBlockM / 16;
  static constexpr int kWarps = kRowGroups * kSplitD;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kSliceD = kD / kSplitD;
  // Shared-memory row pitch in elements: 16 extra bytes put the 8 row addresses of one ldmatrix
  // phase on 8 different 16-byte bank groups (kD * 2 bytes is a multiple of 32).
  static constexpr int kPitch = kD + 8;
  static constexpr int kKeyTiles = kBlockN / 8;  // 16x8 score tiles per warp
  static constexpr int kOutTiles = kSliceD / 8;  // 16x8 output tiles per warp
  static constexpr int kExchangeFloat4s = kSplitD > 1 ? kWarps * kKeyTiles * 32 : 0;
  static constexpr size_t kSmemBytes =
      static_cast<size_t>(kBlockM + 2 * kBlockN) * kPitch * 2 + kExchangeFloat4s * sizeof(float4);

  static_assert(kD % 16 == 0 && kSliceD % 16 == 0, "column slices are whole k16 / n16 steps");
  static_assert(kBlockM % 16 == 0 && kBlockN % 16 == 0, "tiles are whole m16 / k16 steps");
};

// Tile choice per padded head dim. Up to 160 one warp holds all output columns of its 16 rows
// (at most 80 fp32 accumulators per thread); beyond, the columns split over 2 or 4 warps to
// stay clear of register spills, and kBlockN shrinks so shared memory fits sm_80's 163 KB.
using Config48 = TileConfig<48, 64, 64, 1>;     // 21.0 KB smem, 128 threads
using Config64 = TileConfig<64, 64, 64, 1>;     // 27.0 KB
using Config80 = TileConfig<80, 64, 64, 1>;     // 33.0 KB
using Config128 = TileConfig<128, 64, 64, 1>;   // 51.0 KB
using Config160 = TileConfig<160, 64, 64, 1>;   // 63.0 KB
using Config256 = TileConfig<256, 64, 32, 2>;   // 82.0 KB, 256 threads
using Config512 = TileConfig<512, 32, 32, 4>;   // 113.5 KB, 256 threads

constexpr size_t kMaxSmemPerBlockSm80 = 163 * 1024;  // opt-in limit; sm_90 allows 227 KB
static_assert(Config160::kSmemBytes <= kMaxSmemPerBlockSm80 &&
                  Config256::kSmemBytes <= kMaxSmemPerBlockSm80 &&
                  Config512::kSmemBytes <= kMaxSmemPerBlockSm80,
              "every configuration must launch on A100 as well as H100");

// ---- element-type specifics ----------------------------------------------------------------

template <typename T>
struct Mma;

// Two 16-bit values (a __half2 or __nv_bfloat162) as one 32-bit mma operand register.
template <typename Pair>
__device__ inline uint32_t operand_register(const Pair& pair) {
  static_assert(sizeof(Pair) == sizeof(uint32_t), "an mma operand register holds two 16-bit values");
  uint32_t bits;
  memcpy(&bits, &pair, sizeof(bits));
  return bits;
}

template <>
struct Mma<__half> {
  // d += a * b for one m16n8k16 tile, fp32 accumulation.
  __device__ static void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  // Two floats as one 32-bit operand register, the lower column in the low half.
  __device__ static uint32_t pack(float lo, float hi) { return operand_register(__floats2half2_rn(lo, hi)); }
};

template <>
struct Mma<__nv_bfloat16> {
  __device__ static void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  __device__ static uint32_t pack(float lo, float hi) { return operand_register(__floats2bfloat162_rn(lo, hi)); }
};

// ---- shared-memory movement ----------------------------------------------------------------

__device__ inline uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Copies 16 bytes global -> shared without staging in registers; when !valid it writes 16 zero
// bytes instead (src-size 0), which is how tails and head-dim padding become zeros.
__device__ inline void cp_async_16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(smem)),
               "l"(gmem), "r"(valid ? 16 : 0)
               : "memory");
}

__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most kPending of this thread's committed copy groups are still in flight.
template <int kPending>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, which lands in r[i].
__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(smem)));
}

// As ldmatrix_x4, each 8x8 matrix transposed on the way (lane 4g + t gets column g, rows 2t and
// 2t + 1).
__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(smem)));
}

// Starts copying rows [first_row, first_row + kRows) of one (batch, head) matrix into a
// [kRows][kPitch] shared tile. Rows at or past `len` and columns at or past `head_dim` are
// zero-filled: zero keys and queries add nothing to a dot product, zero values add nothing to
// the output, and no uninitialised (possibly NaN) shared memory is ever multiplied.
template <typename Cfg, int kRows, typename T>
__device__ inline void load_tile_async(T* tile, const T* matrix, int64_t row_stride, int first_row,
                                       int len, int head_dim) {
  constexpr int kChunksPerRow = Cfg::kD / 8;  // 16-byte chunks
  constexpr int kChunks = kRows * kChunksPerRow;
#pragma unroll
  for (int step = 0; step < (kChunks + Cfg::kThreads - 1) / Cfg::kThreads; ++step) {
    const int chunk = step * Cfg::kThreads + threadIdx.x;
    if (kChunks % Cfg::kThreads != 0 && chunk >= kChunks) break;
    const int row = chunk / kChunksPerRow;
    const int col = (chunk % kChunksPerRow) * 8;
    const bool valid = first_row + row < len && col < head_dim;
    const T* src =
        valid ? matrix + static_cast<int64_t>(first_row + row) * row_stride + col : matrix;
    cp_async_16(tile + row * Cfg::kPitch + col, src, valid);
  }
}

// ---- the three steps of one K/V tile -------------------------------------------------------

// Step 1: scores[n] = the 16x8 tile (this warp's 16 query rows) x (keys 8n..8n+7) of Q K^T,
// summed over this warp's column slice only.
template <typename T, typename Cfg>
__device__ inline void partial_scores(float (&scores)[Cfg::kKeyTiles][4], const T* q_tile,
                                      const T* k_tile, int q_row0, int d_begin, int lane) {
#pragma unroll
  for (int n = 0; n < Cfg::kKeyTiles; ++n) {
#pragma unroll
    for (int i = 0; i < 4; ++i) scores[n][i] = 0.f;
  }
#pragma unroll
  for (int ks = 0; ks < Cfg::kSliceD / 16; ++ks) {
    const int d0 = d_begin + ks * 16;
    // A = Q[16 rows][16 cols]: matrices (rows 0-7 | 8-15) x (cols 0-7 | 8-15) in a0..a3 order.
    uint32_t a[4];
    ldmatrix_x4(a, q_tile + (q_row0 + lane % 16) * Cfg::kPitch + d0 + (lane / 16) * 8);
#pragma unroll
    for (int np = 0; np < Cfg::kBlockN / 16; ++np) {
      // B = K^T for keys 16np..16np+15: K's rows are B's columns, so K row-major is B "col".
      // Matrices: (keys 0-7, cols 0-7), (keys 0-7, cols 8-15), (keys 8-15, cols 0-7), (keys
      // 8-15, cols 8-15) = b0, b1 of key tile 2np, then b0, b1 of key tile 2np + 1.
      uint32_t b[4];
      ldmatrix_x4(b, k_tile + (np * 16 + lane % 8 + (lane / 16) * 8) * Cfg::kPitch + d0 +
                         (lane / 8 % 2) * 8);
      Mma<T>::run(scores[2 * np], a, b[0], b[1]);
      Mma<T>::run(scores[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// Step 1, kSplitD > 1: publish this warp's partial scores and, after the caller's barrier, sum
// the partials of every warp of the row group. Stored in fragment order (tile, lane) so each
// lane reads back exactly the elements it holds.
template <typename Cfg>
__device__ inline void publish_partial_scores(const float (&scores)[Cfg::kKeyTiles][4],
                                              float4* exchange, int warp, int lane) {
#pragma unroll
  for (int n = 0; n < Cfg::kKeyTiles; ++n) {
    exchange[(warp * Cfg::kKeyTiles + n) * 32 + lane] =
        make_float4(scores[n][0], scores[n][1], scores[n][2], scores[n][3]);
  }
}

template <typename Cfg>
__device__ inline void sum_partial_scores(float (&scores)[Cfg::kKeyTiles][4],
                                          const float4* exchange, int row_group, int lane) {
#pragma unroll
  for (int n = 0; n < Cfg::kKeyTiles; ++n) {
    float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int part = 0; part < Cfg::kSplitD; ++part) {
      const int warp = row_group * Cfg::kSplitD + part;
      const float4 p = exchange[(warp * Cfg::kKeyTiles + n) * 32 + lane];
      sum.x += p.x;
      sum.y += p.y;
      sum.z += p.z;
      sum.w += p.w;
    }
    scores[n][0] = sum.x;
    scores[n][1] = sum.y;
    scores[n][2] = sum.z;
    scores[n][3] = sum.w;
  }
}

// Scores to the log2 domain (exp2 is the native instruction); keys past kv_len, and with causal
// keys after the query, become -inf so they get probability exactly 0.
template <typename Cfg>
__device__ inline void scale_and_mask(float (&scores)[Cfg::kKeyTiles][4], float scale_log2,
                                      bool mask, bool causal, int key0, int kv_len, int q_row) {
#pragma unroll
  for (int n = 0; n < Cfg::kKeyTiles; ++n) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      scores[n][i] *= scale_log2;
      if (mask) {
        const int key = key0 + n * 8 + (i & 1);
        const int row = q_row + (i >> 1) * 8;
        if (key >= kv_len || (causal && key > row)) scores[n][i] = -INFINITY;
      }
    }
  }
}

// Step 2: online softmax. Turns scores into unnormalised probabilities exp2(s - running max),
// folds them into the running row sums, and rescales the output accumulated so far by
// exp2(old max - new max). Each row lives in the 4 lanes of a quad (xor 1, 2 stay inside it).
template <typename Cfg>
__device__ inline void online_softmax(float (&scores)[Cfg::kKeyTiles][4], float (&row_max)[2],
                                      float (&row_sum)[2], float (&out)[Cfg::kOutTiles][4]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {  // r = 0: row g, r = 1: row g + 8
    float tile_max = -INFINITY;
#pragma unroll
    for (int n = 0; n < Cfg::kKeyTiles; ++n) {
      tile_max = fmaxf(tile_max, fmaxf(scores[n][2 * r], scores[n][2 * r + 1]));
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float new_max = fmaxf(row_max[r], tile_max);
    // A row that has seen only masked keys keeps max -inf; subtracting 0 instead keeps
    // exp2(-inf - -inf) = NaN out of it, and its probabilities stay exactly 0.
    const float base = new_max == -INFINITY ? 0.f : new_max;
    const float rescale = exp2f(row_max[r] - base);  // 0 on the first visible tile
    row_max[r] = new_max;
    float tile_sum = 0.f;
#pragma unroll
    for (int n = 0; n < Cfg::kKeyTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        scores[n][2 * r + e] = exp2f(scores[n][2 * r + e] - base);
        tile_sum += scores[n][2 * r + e];
      }
    }
    // Per-lane partial sums: the quad reduction waits until the end (same max in all 4 lanes).
    row_sum[r] = row_sum[r] * rescale + tile_sum;
#pragma unroll
    for (int o = 0; o < Cfg::kOutTiles; ++o) {
      out[o][2 * r] *= rescale;
      out[o][2 * r + 1] *= rescale;
    }
  }
}

// Step 3: out += P V over this warp's column slice. Score tiles 2kk and 2kk + 1 (keys
// 16kk..16kk+15) are, element for element, the a0..a3 registers of an m16k16 A operand.
template <typename T, typename Cfg>
__device__ inline void accumulate_pv(float (&out)[Cfg::kOutTiles][4],
                                     const float (&probs)[Cfg::kKeyTiles][4], const T* v_tile,
                                     int d_begin, int lane) {
#pragma unroll
  for (int kk = 0; kk < Cfg::kBlockN / 16; ++kk) {
    const uint32_t a[4] = {
        Mma<T>::pack(probs[2 * kk][0], probs[2 * kk][1]),
        Mma<T>::pack(probs[2 * kk][2], probs[2 * kk][3]),
        Mma<T>::pack(probs[2 * kk + 1][0], probs[2 * kk + 1][1]),
        Mma<T>::pack(probs[2 * kk + 1][2], probs[2 * kk + 1][3]),
    };
#pragma unroll
    for (int dp = 0; dp < Cfg::kSliceD / 16; ++dp) {
      // B = V[keys][cols] is row-major, so ldmatrix transposes. Matrices: (keys 0-7, cols 0-7),
      // (keys 8-15, cols 0-7), (keys 0-7, cols 8-15), (keys 8-15, cols 8-15) = b0, b1 of output
      // tile 2dp, then b0, b1 of output tile 2dp + 1.
      uint32_t b[4];
      ldmatrix_x4_trans(b, v_tile + (kk * 16 + lane % 8 + (lane / 8 % 2) * 8) * Cfg::kPitch +
                               d_begin + dp * 16 + (lane / 16) * 8);
      Mma<T>::run(out[2 * dp], a, b[0], b[1]);
      Mma<T>::run(out[2 * dp + 1], a, b[2], b[3]);
    }
  }
}

// Divides by the softmax denominator and stores this lane's two rows, two columns per tile.
template <typename T, typename Cfg>
__device__ inline void write_output(const float (&out)[Cfg::kOutTiles][4],
                                    const float (&row_sum)[2], T* out_matrix, int64_t row_stride,
                                    int q_row, int q_len, int d_begin, int head_dim, int t) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float total = row_sum[r];
    total += __shfl_xor_sync(0xffffffffu, total, 1);
    total += __shfl_xor_sync(0xffffffffu, total, 2);
    const float inv = total > 0.f ? 1.f / total : 0.f;  // 0 only for a row that saw no key
    const int row = q_row + r * 8;
    if (row >= q_len) continue;
#pragma unroll
    for (int o = 0; o < Cfg::kOutTiles; ++o) {
      const int col = d_begin + o * 8 + 2 * t;
      if (col < head_dim) {  // head_dim is a multiple of 8: both columns in or both out
        const uint32_t packed = Mma<T>::pack(out[o][2 * r] * inv, out[o][2 * r + 1] * inv);
        *reinterpret_cast<uint32_t*>(out_matrix + row * row_stride + col) = packed;
      }
    }
  }
}

// ---- the kernel ----------------------------------------------------------------------------

// Grid: (ceil(q_len / kBlockM), heads, batch).
template <typename T, typename Cfg>
__global__ void __launch_bounds__(Cfg::kThreads)
    flash_attention_kernel(const FlashAttentionParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* q_tile = reinterpret_cast<T*>(smem);              // [kBlockM][kPitch]
  T* k_tile = q_tile + Cfg::kBlockM * Cfg::kPitch;     // [kBlockN][kPitch]
  T* v_tile = k_tile + Cfg::kBlockN * Cfg::kPitch;     // [kBlockN][kPitch]
  float4* exchange = reinterpret_cast<float4*>(v_tile + Cfg::kBlockN * Cfg::kPitch);

  const int q_len = static_cast<int>(p.q_len);
  const int kv_len = static_cast<int>(p.kv_len);
  const int head_dim = static_cast<int>(p.head_dim);
  const int64_t batch = blockIdx.z, head = blockIdx.y;
  const int m0 = blockIdx.x * Cfg::kBlockM;
  const T* q = static_cast<const T*>(p.q) + batch * p.q_strides.batch + head * p.q_strides.head;
  const T* k = static_cast<const T*>(p.k) + batch * p.k_strides.batch + head * p.k_strides.head;
  const T* v = static_cast<const T*>(p.v) + batch * p.v_strides.batch + head * p.v_strides.head;
  T* out_matrix = static_cast<T*>(p.out) + batch * p.out_strides.batch + head * p.out_strides.head;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row_group = warp / Cfg::kSplitD;
  const int d_begin = (warp % Cfg::kSplitD) * Cfg::kSliceD;
  const int q_row0 = row_group * 16;            // this warp's first row inside the tile
  const int g = lane / 4, t = lane % 4;         // fragment coordinates, see the file comment
  const int my_row = m0 + q_row0 + g;           // this lane's first query row (second: + 8)

  // With causal, keys past the block's last query row are masked for every row: skip them.
  const int kv_end = p.causal ? min(kv_len, min(m0 + Cfg::kBlockM, q_len)) : kv_len;
  const int num_tiles = (kv_end + Cfg::kBlockN - 1) / Cfg::kBlockN;
  const float scale_log2 = p.scale * kLog2e;

  load_tile_async<Cfg, Cfg::kBlockM>(q_tile, q, p.q_strides.row, m0, q_len, head_dim);
  load_tile_async<Cfg, Cfg::kBlockN>(k_tile, k, p.k_strides.row, 0, kv_len, head_dim);
  cp_async_commit();

  float out[Cfg::kOutTiles][4];
#pragma unroll
  for (int o = 0; o < Cfg::kOutTiles; ++o) {
#pragma unroll
    for (int i = 0; i < 4; ++i) out[o][i] = 0.f;
  }
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.f, 0.f};

  for (int tile = 0; tile < num_tiles; ++tile) {
    const int key0 = tile * Cfg::kBlockN;
    const bool has_next = tile + 1 < num_tiles;
    cp_async_wait<0>();  // this thread's K_j (and, on the first tile, Q) copies have landed
    __syncthreads();     // ... everyone's have; and every warp is done reading V_{j-1}
    load_tile_async<Cfg, Cfg::kBlockN>(v_tile, v, p.v_strides.row, key0, kv_len, head_dim);
    cp_async_commit();

    float scores[Cfg::kKeyTiles][4];
    partial_scores<T, Cfg>(scores, q_tile, k_tile, q_row0, d_begin, lane);
    if constexpr (Cfg::kSplitD > 1) publish_partial_scores<Cfg>(scores, exchange, warp, lane);
    __syncthreads();  // every warp is done reading K_j (and has published its partial scores)
    if constexpr (Cfg::kSplitD > 1) sum_partial_scores<Cfg>(scores, exchange, row_group, lane);
    if (has_next) {
      load_tile_async<Cfg, Cfg::kBlockN>(k_tile, k, p.k_strides.row, key0 + Cfg::kBlockN, kv_len,
                                         head_dim);
      cp_async_commit();
    }

    const bool mask = p.causal || key0 + Cfg::kBlockN > kv_len;
    scale_and_mask<Cfg>(scores, scale_log2, mask, p.causal, key0 + 2 * t, kv_len, my_row);
    online_softmax<Cfg>(scores, row_max, row_sum, out);

    if (has_next) {
      cp_async_wait<1>();  // V_j landed; K_{j+1}, committed after it, may still be in flight
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    accumulate_pv<T, Cfg>(out, scores, v_tile, d_begin, lane);
  }

  write_output<T, Cfg>(out, row_sum, out_matrix, p.out_strides.row, my_row, q_len, d_begin,
                       head_dim, t);
}

template <typename T, typename Cfg>
cudaError_t launch(const FlashAttentionParams& p, cudaStream_t stream) {
  const auto kernel = flash_attention_kernel<T, Cfg>;
  if (Cfg::kSmemBytes > 48 * 1024) {  // above the default limit a kernel must opt in
    const cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(Cfg::kSmemBytes));
    if (err != cudaSuccess) return err;
  }
  const dim3 grid(static_cast<unsigned>((p.q_len + Cfg::kBlockM - 1) / Cfg::kBlockM),
                  static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

// Smallest padded head dim that holds head_dim; padding costs at most 20% (40 -> 48).
template <typename T>
cudaError_t dispatch_head_dim(const FlashAttentionParams& p, cudaStream_t stream) {
  if (p.head_dim <= 48) return launch<T, Config48>(p, stream);
  if (p.head_dim <= 64) return launch<T, Config64>(p, stream);
  if (p.head_dim <= 80) return launch<T, Config80>(p, stream);
  if (p.head_dim <= 128) return launch<T, Config128>(p, stream);
  if (p.head_dim <= 160) return launch<T, Config160>(p, stream);
  if (p.head_dim <= 256) return launch<T, Config256>(p, stream);
  return launch<T, Config512>(p, stream);
}

// ---- argument checks -----------------------------------------------------------------------

bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// cp.async moves 16-byte chunks: every row start must be 16-byte aligned. A stride is only
// followed when its dimension has more than one index.
bool strides_aligned(const AttentionStrides& s, int64_t batch, int64_t heads, int64_t len) {
  const auto ok = [](int64_t stride, int64_t extent) { return extent <= 1 || stride % 8 == 0; };
  return ok(s.batch, batch) && ok(s.head, heads) && ok(s.row, len);
}

cudaError_t check_arguments(const FlashAttentionParams& p) {
  if (p.type == ElementType::kFloat32) return cudaErrorNotSupported;  // tensor cores want 16-bit
  if (p.type != ElementType::kFloat16 && p.type != ElementType::kBFloat16) {
    return cudaErrorInvalidValue;
  }
  if (p.batch < 0 || p.heads < 0 || p.q_len < 0 || p.kv_len < 0 || p.head_dim <= 0) {
    return cudaErrorInvalidValue;
  }
  if (p.head_dim % 8 != 0 || p.head_dim > kMaxAttentionHeadDim) return cudaErrorNotSupported;
  if (!std::isfinite(p.scale)) return cudaErrorInvalidValue;
  if (p.batch == 0 || p.heads == 0 || p.q_len == 0) return cudaSuccess;  // nothing to compute
  if (p.kv_len == 0) return cudaErrorInvalidValue;  // softmax over no keys is undefined
  if (!p.q || !p.k || !p.v || !p.out) return cudaErrorInvalidValue;
  // Grid y and z are 16-bit; rows are int inside the kernel, with room for a tile past the end.
  if (p.batch > 65535 || p.heads > 65535 || p.q_len > INT_MAX / 2 || p.kv_len > INT_MAX / 2) {
    return cudaErrorNotSupported;
  }
  if (!aligned_16(p.q) || !aligned_16(p.k) || !aligned_16(p.v) || !aligned_16(p.out) ||
      !strides_aligned(p.q_strides, p.batch, p.heads, p.q_len) ||
      !strides_aligned(p.k_strides, p.batch, p.heads, p.kv_len) ||
      !strides_aligned(p.v_strides, p.batch, p.heads, p.kv_len) ||
      !strides_aligned(p.out_strides, p.batch, p.heads, p.q_len)) {
    return cudaErrorNotSupported;
  }
  return cudaSuccess;
}

}  // namespace

cudaError_t flash_attention_forward(const FlashAttentionParams& p, cudaStream_t stream) {
  const cudaError_t err = check_arguments(p);
  if (err != cudaSuccess) return err;
  if (p.batch == 0 || p.heads == 0 || p.q_len == 0) return cudaSuccess;
  if (p.type == ElementType::kFloat16) return dispatch_head_dim<__half>(p, stream);
  return dispatch_head_dim<__nv_bfloat16>(p, stream);
}

}  // namespace nd::kernels
