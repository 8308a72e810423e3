#include "models/embeddings.h"

#include <ATen/ATen.h>

#include <cmath>

namespace nd {

at::Tensor get_timestep_embedding(const at::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                  double downscale_freq_shift, double scale, int64_t max_period) {
  const int64_t half = dim / 2;
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(timesteps.device());
  at::Tensor exponent = at::arange(0, half, f32) * (-std::log(static_cast<double>(max_period)));
  exponent = exponent / (static_cast<double>(half) - downscale_freq_shift);
  at::Tensor emb = timesteps.unsqueeze(1).to(at::kFloat) * at::exp(exponent).unsqueeze(0);  // [N, half]
  emb = emb * scale;
  emb = flip_sin_to_cos ? at::cat({at::cos(emb), at::sin(emb)}, -1) : at::cat({at::sin(emb), at::cos(emb)}, -1);
  if (dim % 2 == 1) emb = at::constant_pad_nd(emb, {0, 1, 0, 0});  // Ref: zero pad odd dims
  return emb;
}

TimestepEmbedding TimestepEmbedding::load(const WeightLoader& w, int64_t in_channels,
                                          int64_t time_embed_dim, Activation act) {
  return TimestepEmbedding{Linear::load(w.child("linear_1"), in_channels, time_embed_dim),
                           Linear::load(w.child("linear_2"), time_embed_dim, time_embed_dim), act};
}

at::Tensor TimestepEmbedding::forward(const at::Tensor& sample) const {
  return linear_2.forward(apply_activation(act, linear_1.forward(sample)));
}

void TimestepEmbedding::apply(const ParameterFn& fn) {
  linear_1.apply(fn);
  linear_2.apply(fn);
}

}  // namespace nd
