// Mirrors diffusers AutoencoderKL (autoencoders/autoencoder_kl.py): encode to the latent
// distribution's parameters, decode latents to images; scaling_factor/shift_factor are config.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <optional>
#include <string>

#include "io/json_config.h"
#include "io/state_dict.h"
#include "models/autoencoders/vae.h"

namespace nd {

struct AutoencoderKLConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  std::vector<int64_t> block_out_channels = {64};
  int64_t layers_per_block = 1;
  Activation act_fn = Activation::Silu;
  int64_t latent_channels = 4;
  int64_t norm_num_groups = 32;
  double scaling_factor = 0.18215;
  std::optional<double> shift_factor;
  bool force_upcast = true;
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;
  int64_t sample_size = 32;  // the first entry when the config gives a list; tiling's tile size

  static AutoencoderKLConfig from_json(const io::JsonConfig& config);
  // Spatial downscale factor: 2 ** (len(block_out_channels) - 1), diffusers' vae_scale_factor.
  int64_t scale_factor() const { return int64_t{1} << (block_out_channels.size() - 1); }
};

class AutoencoderKL {
 public:
  static AutoencoderKL load(const AutoencoderKLConfig& config, const io::StateDict& state_dict,
                            const std::string& origin, std::optional<at::ScalarType> dtype);

  // images in [-1, 1]: [B, in_channels, H, W] -> latent distribution parameters [B, 2C, h, w].
  at::Tensor encode(const at::Tensor& x) const;
  // latents (unscaled): [B, C, h, w] -> images [B, out_channels, H, W].
  at::Tensor decode(const at::Tensor& z) const;

  // Ref: diffusers enable_slicing / enable_tiling: batch items one at a time, and images larger than
  // sample_size in overlapping tiles of that size, blended where they overlap (a different result
  // from one pass, as in diffusers; it bounds the VAE's memory whatever the image size).
  void set_slicing(bool enabled) { use_slicing_ = enabled; }
  void set_tiling(bool enabled) { use_tiling_ = enabled; }
  bool slicing() const { return use_slicing_; }
  bool tiling() const { return use_tiling_; }
  int64_t tile_sample_min_size() const { return config_.sample_size; }
  int64_t tile_latent_min_size() const { return config_.sample_size / config_.scale_factor(); }

  void to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype);
  at::ScalarType dtype() const;
  c10::Device device() const;
  const AutoencoderKLConfig& config() const { return config_; }
  int64_t num_parameters() const;
  void apply(const ParameterFn& fn);
  // Its streamable blocks, for sequential offloading.
  void for_each_unit(const UnitVisitor& visit);
  // Ref: diffusers AutoencoderKL.fuse_qkv_projections / unfuse_qkv_projections: the mid blocks'
  // self-attention makes query, key and value in one GEMM (see Attention::fuse_projections).
  void fuse_qkv_projections();
  void unfuse_qkv_projections();

 private:
  at::Tensor decoder_probe();
  // Ref: diffusers _encode / _decode: one batch, tiled when tiling is on and the input is larger
  // than a tile.
  at::Tensor encode_batch(const at::Tensor& x) const;
  at::Tensor decode_batch(const at::Tensor& z) const;
  at::Tensor encode_tile(const at::Tensor& x) const;
  at::Tensor decode_tile(const at::Tensor& z) const;

  AutoencoderKLConfig config_;
  Encoder encoder_;
  Decoder decoder_;
  std::optional<Conv2d> quant_conv_, post_quant_conv_;
  at::Tensor probe_;  // a parameter that reports the model's dtype and device
  bool use_slicing_ = false;
  bool use_tiling_ = false;
};

}  // namespace nd
