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

ImageProjection ImageProjection::load(const WeightLoader& w, int64_t image_embed_dim,
                                      int64_t cross_attention_dim, int64_t num_image_text_embeds) {
  // nn.LayerNorm's default eps.
  return ImageProjection{Linear::load(w.child("image_embeds"), image_embed_dim, num_image_text_embeds * cross_attention_dim),
                         LayerNorm::load(w.child("norm"), cross_attention_dim, 1e-5), num_image_text_embeds};
}

at::Tensor ImageProjection::forward(const at::Tensor& x) const {
  const int64_t batch = x.size(0);
  at::Tensor h = image_embeds.forward(x.to(image_embeds.weight.scalar_type()));
  h = h.reshape({batch, num_image_text_embeds, -1});  // [B, n, cross_attention_dim]
  return norm.forward(h);
}

void ImageProjection::apply(const ParameterFn& fn) {
  image_embeds.apply(fn);
  norm.apply(fn);
}

ImageTimeEmbedding ImageTimeEmbedding::load(const WeightLoader& w, int64_t image_embed_dim, int64_t time_embed_dim) {
  return ImageTimeEmbedding{Linear::load(w.child("image_proj"), image_embed_dim, time_embed_dim),
                            LayerNorm::load(w.child("image_norm"), time_embed_dim, 1e-5)};
}

at::Tensor ImageTimeEmbedding::forward(const at::Tensor& x) const {
  return image_norm.forward(image_proj.forward(x));
}

void ImageTimeEmbedding::apply(const ParameterFn& fn) {
  image_proj.apply(fn);
  image_norm.apply(fn);
}

}  // namespace nd
