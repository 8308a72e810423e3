// Mirrors diffusers VQModel (autoencoders/vq_model.py), Kandinsky 2.2's MoVQ: encode to the
// pre-quantization latents, decode through the VectorQuantizer (or not: force_not_quantize) and a
// decoder whose norms may be conditioned on the quantized latents (norm_type "spatial").
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/json_config.h"
#include "io/state_dict.h"
#include "models/autoencoders/vae.h"

namespace nd {

struct VQModelConfig {
  // Keys and defaults are diffusers' constructor arguments.
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  std::vector<std::string> down_block_types = {"DownEncoderBlock2D"};
  std::vector<std::string> up_block_types = {"UpDecoderBlock2D"};
  std::vector<int64_t> block_out_channels = {64};
  int64_t layers_per_block = 1;
  Activation act_fn = Activation::Silu;
  int64_t latent_channels = 3;
  int64_t num_vq_embeddings = 256;
  int64_t norm_num_groups = 32;
  int64_t vq_embed_dim = 0;  // null in config.json: latent_channels
  double scaling_factor = 0.18215;
  bool spatial_norm = false;  // norm_type: "group" (false) or "spatial"
  bool mid_block_add_attention = true;
  bool force_upcast = false;

  static VQModelConfig from_json(const io::JsonConfig& config);
  // 2 ** (len(block_out_channels) - 1): the pipelines' movq_scale_factor.
  int64_t scale_factor() const { return int64_t{1} << (block_out_channels.size() - 1); }
};

class VQModel {
 public:
  static VQModel load(const VQModelConfig& config, const io::StateDict& state_dict, const std::string& origin,
                      std::optional<at::ScalarType> dtype);

  // images [B, in_channels, H, W] -> latents h = quant_conv(encoder(x)) [B, vq_embed_dim, H/f, W/f].
  at::Tensor encode(const at::Tensor& x) const;
  // Ref: diffusers VQModel.decode: latents -> (images [B, out_channels, H, W], commit_loss). With
  // force_not_quantize the latents skip the codebook and commit_loss is zeros [B]; else 0-d.
  std::pair<at::Tensor, at::Tensor> decode(const at::Tensor& h, bool force_not_quantize = false) const;

  void to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype);
  at::ScalarType dtype() const { return quant_conv_.weight.scalar_type(); }
  c10::Device device() const { return quant_conv_.weight.device(); }
  const VQModelConfig& config() const { return config_; }
  int64_t num_parameters() const;
  void apply(const ParameterFn& fn);

 private:
  VQModelConfig config_;
  Encoder encoder_;
  Decoder decoder_;
  Conv2d quant_conv_, post_quant_conv_;
  VectorQuantizer quantize_;
};

}  // namespace nd
