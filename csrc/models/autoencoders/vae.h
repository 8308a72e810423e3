// Mirrors diffusers autoencoders/vae.py: the KL autoencoder's Encoder and Decoder, and
// DiagonalGaussianDistribution's sampling.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "models/unets/unet_2d_blocks.h"

namespace nd {

struct VaeCoderConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  std::vector<int64_t> block_out_channels = {64};
  int64_t layers_per_block = 2;
  int64_t norm_num_groups = 32;
  Activation act_fn = Activation::Silu;
  bool mid_block_add_attention = true;
};

class Encoder {
 public:
  // out_channels: the latent channels; the encoder emits twice that (mean and log-variance).
  static Encoder load(const WeightLoader& w, const VaeCoderConfig& config);
  at::Tensor forward(const at::Tensor& x) const;  // [B, C, H, W] -> [B, 2 * latent, H/f, W/f]
  void apply(const ParameterFn& fn);

 private:
  Conv2d conv_in_, conv_out_;
  std::vector<DownBlock2D> down_blocks_;
  MidBlock2D mid_block_;
  GroupNorm conv_norm_out_;
  Activation act_ = Activation::Silu;
};

class Decoder {
 public:
  static Decoder load(const WeightLoader& w, const VaeCoderConfig& config);
  at::Tensor forward(const at::Tensor& z) const;  // [B, latent, h, w] -> [B, C, h*f, w*f]
  void apply(const ParameterFn& fn);

 private:
  Conv2d conv_in_, conv_out_;
  MidBlock2D mid_block_;
  std::vector<UpBlock2D> up_blocks_;
  GroupNorm conv_norm_out_;
  Activation act_ = Activation::Silu;
};

// Ref: diffusers vae.py, DiagonalGaussianDistribution: parameters [B, 2C, h, w] -> mean + std * eps,
// eps drawn by randn_tensor (core/random.h).
at::Tensor sample_diagonal_gaussian(const at::Tensor& parameters,
                                    const std::vector<at::Generator>& generators);
at::Tensor diagonal_gaussian_mode(const at::Tensor& parameters);

}  // namespace nd
