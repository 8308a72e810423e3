// Mirrors diffusers unets/unet_2d_blocks.py for the blocks our UNets and autoencoders use:
// SD's CrossAttnDownBlock2D / DownBlock2D, UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D / UpBlock2D;
// Kandinsky 2.2's ResnetDownsampleBlock2D / SimpleCrossAttnDownBlock2D,
// UNetMidBlock2DSimpleCrossAttn, SimpleCrossAttnUpBlock2D / ResnetUpsampleBlock2D; and the VAEs'
// DownEncoderBlock2D / AttnDownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D / AttnUpDecoderBlock2D.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

#include "models/resnet.h"
#include "models/transformers/transformer_2d.h"

namespace nd {

// The attention a block puts after each resnet (when has_attention).
enum class BlockAttention {
  kTransformer,  // Transformer2DModel (CrossAttn* blocks, UNetMidBlock2DCrossAttn)
  kAddedKV,      // Attention with added K/V of the encoder states (SimpleCrossAttn* blocks)
  kSelf,         // the VAEs' spatial self-attention (Attn*EncoderBlock2D, UNetMidBlock2D)
};

struct UNetBlockConfig {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t prev_output_channel = 0;  // up blocks: channels coming from the block below
  int64_t temb_channels = 0;        // with kSpatial resnets: zq channels
  int64_t num_layers = 2;
  int64_t transformer_layers = 1;
  int64_t resnet_groups = 32;
  double resnet_eps = 1e-5;
  double output_scale_factor = 1.0;
  Activation act = Activation::Silu;
  TimeEmbeddingNorm resnet_time_scale_shift = TimeEmbeddingNorm::kDefault;
  bool has_attention = false;
  BlockAttention attention = BlockAttention::kTransformer;
  // kTransformer: heads (diffusers' legacy "attention_head_dim"); kAddedKV: the head *dimension*,
  // heads = channels / it (diffusers' SimpleCrossAttn blocks); kSelf: heads.
  int64_t num_attention_heads = 8;
  int64_t cross_attention_dim = 0;  // kTransformer: context features; kAddedKV: added_kv_proj_dim
  bool use_linear_projection = false;
  bool only_cross_attention = false;
  bool upcast_attention = false;
  bool add_sample_change = false;  // add_downsample / add_upsample
  // The down/upsampler is a ResnetBlock2D(down/up=True) taking temb (ResnetDownsampleBlock2D,
  // SimpleCrossAttn*, ResnetUpsampleBlock2D) instead of a strided / nearest conv.
  bool resnet_sample_change = false;
  int64_t downsample_padding = 1;
  // Up blocks: their index among the UNet's up blocks (diffusers' resolution_idx; FreeU acts on the
  // first two), and whether the block is one of the two kinds diffusers applies FreeU in
  // (CrossAttnUpBlock2D, UpBlock2D).
  int64_t resolution_idx = 0;
  bool freeu_capable = false;
};

// Ref: diffusers UNet2DConditionModel.enable_freeu (FreeU, arXiv 2309.11497): b1/b2 amplify half of
// the backbone features, s1/s2 attenuate the low frequencies of the skip features, in the first and
// second up block. Off unless all four are non-zero (diffusers tests them for truth).
struct FreeU {
  double s1 = 0, s2 = 0, b1 = 0, b2 = 0;
  bool enabled() const { return s1 != 0 && s2 != 0 && b1 != 0 && b2 != 0; }
};

// CrossAttnDownBlock2D / DownBlock2D / ResnetDownsampleBlock2D / SimpleCrossAttnDownBlock2D, and
// the VAE's DownEncoderBlock2D / AttnDownEncoderBlock2D (temb_channels 0, downsample_padding 0).
class DownBlock2D {
 public:
  static DownBlock2D load(const WeightLoader& w, const UNetBlockConfig& config);
  // Appends each layer's output (the skip connections) to `skips`.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const EncoderContext& context,
                     std::vector<at::Tensor>* skips) const;
  void apply(const ParameterFn& fn);
  void for_each_attention(const AttentionVisitor& visit);
  // Its streamable blocks, for sequential offloading.
  void for_each_unit(const UnitVisitor& visit);

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
  std::vector<Attention> attention_layers_;  // kAddedKV / kSelf
  std::optional<Downsample2D> downsampler_;
  std::optional<ResnetBlock2D> resnet_downsampler_;
};

// UNetMidBlock2DCrossAttn (kTransformer), UNetMidBlock2DSimpleCrossAttn (kAddedKV), or the VAE's
// UNetMidBlock2D (kSelf: single-head spatial self-attention).
class MidBlock2D {
 public:
  static MidBlock2D load(const WeightLoader& w, const UNetBlockConfig& config);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const EncoderContext& context) const;
  void apply(const ParameterFn& fn);
  void for_each_attention(const AttentionVisitor& visit);
  // Its streamable blocks, for sequential offloading.
  void for_each_unit(const UnitVisitor& visit);

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> transformers_;
  std::vector<Attention> attentions_;
};

// CrossAttnUpBlock2D / UpBlock2D / SimpleCrossAttnUpBlock2D / ResnetUpsampleBlock2D; the VAE's
// UpDecoderBlock2D / AttnUpDecoderBlock2D when it takes no skips (prev_output_channel == 0).
class UpBlock2D {
 public:
  static UpBlock2D load(const WeightLoader& w, const UNetBlockConfig& config);
  // Pops this block's skip connections from the back of `skips` (none for the VAE decoder).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const EncoderContext& context,
                     std::vector<at::Tensor>* skips, at::IntArrayRef upsample_size) const;
  void apply(const ParameterFn& fn);
  void for_each_attention(const AttentionVisitor& visit);
  // Its streamable blocks, for sequential offloading.
  void for_each_unit(const UnitVisitor& visit);
  int64_t num_layers() const { return static_cast<int64_t>(resnets_.size()); }
  void set_freeu(const FreeU& freeu) { freeu_ = freeu; }

 private:
  int64_t resolution_idx_ = 0;
  bool freeu_capable_ = false;
  FreeU freeu_;
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
  std::vector<Attention> attention_layers_;  // kAddedKV / kSelf
  std::optional<Upsample2D> upsampler_;
  std::optional<ResnetBlock2D> resnet_upsampler_;
};

}  // namespace nd
