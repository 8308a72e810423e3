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
// eps drawn like diffusers' randn_tensor (on the generator's device, then moved).
at::Tensor sample_diagonal_gaussian(const at::Tensor& parameters,
                                    const std::optional<at::Generator>& generator);
at::Tensor diagonal_gaussian_mode(const at::Tensor& parameters);

// diffusers' randn_tensor: noise of `shape` drawn on the generator's device (CPU when none),
// then moved to `device` in `dtype`, so a CPU generator gives the same numbers on any device.
at::Tensor randn_like_diffusers(at::IntArrayRef shape, const std::optional<at::Generator>& generator,
                                c10::Device device, at::ScalarType dtype);

}  // namespace nd
