// Mirrors diffusers resnet.py: ResnetBlock2D (time_embedding_norm "default" / "scale_shift", up/down
// inside the block) and ResnetBlockCondNorm2D with SpatialNorm (MoVQ's decoder), and
// Downsample2D / Upsample2D (downsampling.py, upsampling.py) as the UNet and the VAE use them.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "models/activations.h"
#include "models/attention_processor.h"
#include "models/layers.h"

namespace nd {

// How a resnet block takes its conditioning `temb`.
enum class TimeEmbeddingNorm {
  kDefault,     // time_emb_proj(act(temb)) added before norm2
  kScaleShift,  // time_emb_proj emits 2 * out_channels: norm2(h) * (1 + scale) + shift
  kSpatial,     // ResnetBlockCondNorm2D: norm1/norm2 are SpatialNorm(·, zq); `temb` is zq
};

struct ResnetBlock2DConfig {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t temb_channels = 0;  // 0: no time embedding (the VAE's blocks); kSpatial: zq channels
  int64_t groups = 32;
  double eps = 1e-6;
  double output_scale_factor = 1.0;
  Activation act = Activation::Silu;
  TimeEmbeddingNorm time_embedding_norm = TimeEmbeddingNorm::kDefault;
  // Ref: diffusers ResnetBlock2D(up=True / down=True): nearest x2 / 2x2 average pooling of both the
  // input and the hidden states after norm1 (ResnetUpsampleBlock2D, ResnetDownsampleBlock2D).
  bool up = false;
  bool down = false;
};

class ResnetBlock2D {
 public:
  static ResnetBlock2D load(const WeightLoader& w, const ResnetBlock2DConfig& config);
  // x: [B, C_in, H, W]; temb: [B, temb_channels], zq [B, zq_channels, h, w] (kSpatial), or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb) const;
  void apply(const ParameterFn& fn);

 private:
  ResnetBlock2DConfig config_;
  GroupNorm norm1_, norm2_;
  std::optional<SpatialNorm> spatial_norm1_, spatial_norm2_;  // kSpatial: norm1 / norm2
  Conv2d conv1_, conv2_;
  std::optional<Linear> time_emb_proj_;
  std::optional<Conv2d> conv_shortcut_;
};

// Nearest-neighbour x2 (or to `output_size` [H, W]), in fp32 for bfloat16 inputs as diffusers'
// Upsample2D does (no bfloat16 kernel).
at::Tensor upsample_nearest(const at::Tensor& x, at::IntArrayRef output_size = {});

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
