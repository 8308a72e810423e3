// Mirrors diffusers embeddings.py: the sinusoidal timestep projection (Timesteps,
// get_timestep_embedding), the TimestepEmbedding MLP, and Kandinsky 2.2's ImageProjection
// (encoder_hid_dim_type="image_proj") and ImageTimeEmbedding (addition_embed_type="image").
#pragma once

#include <ATen/core/Tensor.h>

#include "models/activations.h"
#include "models/layers.h"

namespace nd {

// timesteps: [N] (any numeric dtype) -> [N, dim] float32.
// Ref: diffusers embeddings.py, get_timestep_embedding.
at::Tensor get_timestep_embedding(const at::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                  double downscale_freq_shift, double scale = 1.0,
                                  int64_t max_period = 10000);

struct TimestepEmbedding {
  Linear linear_1, linear_2;
  Activation act = Activation::Silu;

  static TimestepEmbedding load(const WeightLoader& w, int64_t in_channels, int64_t time_embed_dim,
                                Activation act);
  at::Tensor forward(const at::Tensor& sample) const;  // [N, in] -> [N, time_embed_dim]
  void apply(const ParameterFn& fn);
};

// Ref: diffusers ImageProjection: image_embeds [B, image_embed_dim] -> num_image_text_embeds
// tokens [B, n, cross_attention_dim], LayerNorm'd; the UNet's encoder states.
struct ImageProjection {
  Linear image_embeds;  // image_embed_dim -> n * cross_attention_dim
  LayerNorm norm;       // cross_attention_dim
  int64_t num_image_text_embeds = 32;

  static ImageProjection load(const WeightLoader& w, int64_t image_embed_dim, int64_t cross_attention_dim,
                              int64_t num_image_text_embeds = 32);
  at::Tensor forward(const at::Tensor& image_embeds) const;
  void apply(const ParameterFn& fn);
};

// Ref: diffusers ImageTimeEmbedding: LayerNorm(Linear(image_embeds)), added to the time embedding.
struct ImageTimeEmbedding {
  Linear image_proj;  // image_embed_dim -> time_embed_dim
  LayerNorm image_norm;

  static ImageTimeEmbedding load(const WeightLoader& w, int64_t image_embed_dim, int64_t time_embed_dim);
  at::Tensor forward(const at::Tensor& image_embeds) const;  // [B, image_embed_dim] -> [B, time_embed_dim]
  void apply(const ParameterFn& fn);
};

}  // namespace nd
