// Mirrors diffusers autoencoders/vae.py: the Encoder and Decoder of the KL and VQ autoencoders
// (plain or Attn* encoder/decoder blocks, the decoder's norm_type "group" or "spatial"),
// DiagonalGaussianDistribution's sampling, and VectorQuantizer.
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
  // Per block, in the order of down_block_types (encoder) or up_block_types (decoder): true for
  // AttnDownEncoderBlock2D / AttnUpDecoderBlock2D (single-head self-attention after each resnet).
  // Empty: no attention blocks.
  std::vector<bool> attention_blocks;
  bool double_z = true;       // encoder: emit mean and log-variance (KL) or the latents only (VQ)
  bool spatial_norm = false;  // decoder: norm_type "spatial" (MoVQ), conditioned on the latents

  // The encoder's config from an autoencoder config (AutoencoderKLConfig, VQModelConfig): the
  // shared block layout, image channels in, latent channels out.
  template <typename AutoencoderConfig>
  static VaeCoderConfig encoder_of(const AutoencoderConfig& c) {
    VaeCoderConfig coder;
    coder.block_out_channels = c.block_out_channels;
    coder.layers_per_block = c.layers_per_block;
    coder.norm_num_groups = c.norm_num_groups;
    coder.act_fn = c.act_fn;
    coder.mid_block_add_attention = c.mid_block_add_attention;
    coder.in_channels = c.in_channels;
    coder.out_channels = c.latent_channels;
    return coder;
  }
};

class Encoder {
 public:
  // out_channels: the latent channels; the encoder emits twice that (mean and log-variance).
  static Encoder load(const WeightLoader& w, const VaeCoderConfig& config);
  at::Tensor forward(const at::Tensor& x) const;  // [B, C, H, W] -> [B, 2 * latent, H/f, W/f]
  void apply(const ParameterFn& fn);
  // Its streamable blocks, for sequential offloading.
  void for_each_unit(const UnitVisitor& visit);
  void for_each_attention(const AttentionVisitor& visit);

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
  // z: [B, latent, h, w] -> [B, C, h*f, w*f]; zq: the quantized latents that condition the
  // SpatialNorms (norm_type "spatial"), else undefined.
  at::Tensor forward(const at::Tensor& z, const at::Tensor& zq = at::Tensor()) const;
  void apply(const ParameterFn& fn);
  // Its streamable blocks, for sequential offloading.
  void for_each_unit(const UnitVisitor& visit);
  void for_each_attention(const AttentionVisitor& visit);

 private:
  Conv2d conv_in_, conv_out_;
  MidBlock2D mid_block_;
  std::vector<UpBlock2D> up_blocks_;
  GroupNorm conv_norm_out_;
  std::optional<SpatialNorm> spatial_norm_out_;  // conv_norm_out with norm_type "spatial"
  Activation act_ = Activation::Silu;
};

// Ref: diffusers vae.py, DiagonalGaussianDistribution: parameters [B, 2C, h, w] -> mean + std * eps,
// eps drawn by randn_tensor (core/random.h).
at::Tensor sample_diagonal_gaussian(const at::Tensor& parameters,
                                    const std::vector<at::Generator>& generators);
at::Tensor diagonal_gaussian_mode(const at::Tensor& parameters);

// Ref: diffusers vae.py, VectorQuantizer (legacy loss, no remap): each latent pixel snaps to its
// nearest codebook vector (torch.cdist + argmin, so ties break as diffusers').
class VectorQuantizer {
 public:
  static VectorQuantizer load(const WeightLoader& w, int64_t n_e, int64_t vq_embed_dim, double beta);
  // z: [B, vq_embed_dim, h, w] -> (z_q [B, vq_embed_dim, h, w], commitment loss 0-d).
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& z) const;
  void apply(const ParameterFn& fn) { embedding_.apply(fn); }

 private:
  Embedding embedding_;  // [n_e, vq_embed_dim]
  double beta_ = 0.25;
};

}  // namespace nd
