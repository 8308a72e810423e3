// Mirrors diffusers resnet.py: ResnetBlock2D, and Downsample2D / Upsample2D (downsampling.py,
// upsampling.py) as the UNet and the VAE use them.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "models/activations.h"
#include "models/layers.h"

namespace nd {

struct ResnetBlock2DConfig {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t temb_channels = 0;  // 0: no time embedding (the VAE's blocks)
  int64_t groups = 32;
  double eps = 1e-6;
  double output_scale_factor = 1.0;
  Activation act = Activation::Silu;
};

class ResnetBlock2D {
 public:
  static ResnetBlock2D load(const WeightLoader& w, const ResnetBlock2DConfig& config);
  // x: [B, C_in, H, W]; temb: [B, temb_channels] or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb) const;
  void apply(const ParameterFn& fn);

 private:
  ResnetBlock2DConfig config_;
  GroupNorm norm1_, norm2_;
  Conv2d conv1_, conv2_;
  std::optional<Linear> time_emb_proj_;
  std::optional<Conv2d> conv_shortcut_;
};

class Downsample2D {
 public:
  // padding 1: the UNet's (conv stride 2, pad 1); padding 0: the VAE's, which pads right/bottom.
  static Downsample2D load(const WeightLoader& w, int64_t channels, int64_t out_channels,
                           int64_t padding);
  at::Tensor forward(const at::Tensor& x) const;
  void apply(const ParameterFn& fn) { conv_.apply(fn); }

 private:
  Conv2d conv_;
  int64_t padding_ = 1;
};

class Upsample2D {
 public:
  static Upsample2D load(const WeightLoader& w, int64_t channels, int64_t out_channels);
  // Nearest x2, or to `output_size` [H, W] when the UNet's input was not a multiple of its
  // overall downsampling factor (diffusers' forward_upsample_size).
  at::Tensor forward(const at::Tensor& x, at::IntArrayRef output_size = {}) const;
  void apply(const ParameterFn& fn) { conv_.apply(fn); }

 private:
  Conv2d conv_;
};

}  // namespace nd
