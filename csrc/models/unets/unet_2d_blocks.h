// Mirrors diffusers unets/unet_2d_blocks.py for the blocks SD 1.x/2.x and the KL VAE use:
// CrossAttnDownBlock2D / DownBlock2D, UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D / UpBlock2D,
// and the VAE's DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

#include "models/resnet.h"
#include "models/transformers/transformer_2d.h"

namespace nd {

struct UNetBlockConfig {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t prev_output_channel = 0;  // up blocks: channels coming from the block below
  int64_t temb_channels = 0;
  int64_t num_layers = 2;
  int64_t transformer_layers = 1;
  int64_t resnet_groups = 32;
  double resnet_eps = 1e-5;
  double output_scale_factor = 1.0;
  Activation act = Activation::Silu;
  bool has_attention = false;
  int64_t num_attention_heads = 8;
  int64_t cross_attention_dim = 0;
  bool use_linear_projection = false;
  bool only_cross_attention = false;
  bool upcast_attention = false;
  bool add_sample_change = false;  // add_downsample / add_upsample
  int64_t downsample_padding = 1;
};

// CrossAttnDownBlock2D when has_attention, else DownBlock2D (and DownEncoderBlock2D with
// temb_channels 0 and downsample_padding 0).
class DownBlock2D {
 public:
  static DownBlock2D load(const WeightLoader& w, const UNetBlockConfig& config);
  // Appends each layer's output (the skip connections) to `skips`.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const at::Tensor& context,
                     std::vector<at::Tensor>* skips) const;
  void apply(const ParameterFn& fn);

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
  std::optional<Downsample2D> downsampler_;
};

// UNetMidBlock2DCrossAttn when has_attention and cross_attention_dim > 0; the VAE's
// UNetMidBlock2D (single-head spatial self-attention) when cross_attention_dim == 0.
class MidBlock2D {
 public:
  static MidBlock2D load(const WeightLoader& w, const UNetBlockConfig& config);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const at::Tensor& context) const;
  void apply(const ParameterFn& fn);

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> transformers_;
  std::vector<Attention> attentions_;
};

// CrossAttnUpBlock2D when has_attention, else UpBlock2D; UpDecoderBlock2D when it takes no
// skips (prev_output_channel == 0).
class UpBlock2D {
 public:
  static UpBlock2D load(const WeightLoader& w, const UNetBlockConfig& config);
  // Pops this block's skip connections from the back of `skips` (none for the VAE decoder).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const at::Tensor& context,
                     std::vector<at::Tensor>* skips, at::IntArrayRef upsample_size) const;
  void apply(const ParameterFn& fn);
  int64_t num_layers() const { return static_cast<int64_t>(resnets_.size()); }

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
  std::optional<Upsample2D> upsampler_;
};

}  // namespace nd
