// Mirrors diffusers embeddings.py: the sinusoidal timestep projection (Timesteps,
// get_timestep_embedding) and the TimestepEmbedding MLP.
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

}  // namespace nd
