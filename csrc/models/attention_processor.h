// Mirrors diffusers Attention with AttnProcessor2_0 (attention_processor.py): to_q/to_k/to_v,
// to_out.0, optional GroupNorm on the input and residual connection (the VAE's mid-block form).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "models/layers.h"

namespace nd {

struct AttentionConfig {
  int64_t query_dim = 0;
  int64_t cross_attention_dim = 0;  // 0: self-attention (keys from the query input)
  int64_t heads = 8;
  int64_t dim_head = 64;
  bool qkv_bias = false;
  bool out_bias = true;
  int64_t norm_num_groups = 0;  // > 0: GroupNorm on the input (VAE)
  double eps = 1e-5;
  bool residual_connection = false;
  double rescale_output_factor = 1.0;
};

class Attention {
 public:
  static Attention load(const WeightLoader& w, const AttentionConfig& config);
  // hidden: [B, L, query_dim] or [B, C, H, W]; context: [B, S, cross_attention_dim] or undefined.
  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& context = at::Tensor()) const;
  void apply(const ParameterFn& fn);

 private:
  AttentionConfig config_;
  std::optional<GroupNorm> group_norm_;
  Linear to_q_, to_k_, to_v_, to_out_;
};

}  // namespace nd
