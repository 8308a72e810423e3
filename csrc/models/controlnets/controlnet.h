// Mirrors diffusers ControlNetModel (models/controlnets/controlnet.py): a copy of the UNet's down
// half (conv_in, time embedding, down blocks, mid block) that also reads a conditioning image, and
// whose skip connections, through zero-initialised 1x1 convolutions, become the residuals the UNet
// adds to its own (UNetControlResiduals).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <optional>
#include <string>
#include <vector>

#include "io/json_config.h"
#include "io/state_dict.h"
#include "models/embeddings.h"
#include "models/unets/unet_2d_condition.h"

namespace nd {

struct ControlNetConfig {
  // The down half's keys and defaults are the UNet's (diffusers' ControlNetModel repeats them).
  UNet2DConditionConfig unet;
  int64_t conditioning_channels = 3;
  std::vector<int64_t> conditioning_embedding_out_channels = {16, 32, 96, 256};
  // Residuals averaged over height and width (diffusers' shuffle ControlNets); implies guess mode.
  bool global_pool_conditions = false;
  // controlnet_conditioning_channel_order "bgr": the conditioning image's channels are flipped.
  bool bgr_conditioning = false;

  // Unsupported options raise ValueError naming the key and the file.
  static ControlNetConfig from_json(const io::JsonConfig& config);
};

// diffusers' ControlNetOutput: down_block_res_samples and mid_block_res_sample.
using ControlNetOutput = UNetControlResiduals;

// Ref: diffusers ControlNetConditioningEmbedding: 3x3 convolutions with SiLU between them, every
// second one with stride 2, from the conditioning image to the latent resolution.
class ControlNetConditioningEmbedding {
 public:
  static ControlNetConditioningEmbedding load(const WeightLoader& w, int64_t embedding_channels,
                                              int64_t conditioning_channels,
                                              const std::vector<int64_t>& block_out_channels);
  at::Tensor forward(const at::Tensor& conditioning) const;
  void apply(const ParameterFn& fn);
  // The spatial size the embedding makes of an h x w image (each stride-2 conv halves it, rounding up).
  int64_t output_size(int64_t size) const;

 private:
  Conv2d conv_in_;
  std::vector<Conv2d> blocks_;
  Conv2d conv_out_;
};

class ControlNetModel {
 public:
  static ControlNetModel load(const ControlNetConfig& config, const io::StateDict& state_dict,
                              const std::string& origin, std::optional<at::ScalarType> dtype);

  // sample: [B, in_channels, H, W]; timestep: scalar, [1] or [B]; encoder_hidden_states: [B, S,
  // cross_attention_dim]; controlnet_cond: [B, conditioning_channels, h, w], an image the
  // conditioning embedding brings to H x W. Ref: diffusers ControlNetModel.forward: the residuals
  // scaled by conditioning_scale, or in guess mode by logspace(-1, 0) times it (shallow ones least).
  ControlNetOutput forward(const at::Tensor& sample, const at::Tensor& timestep,
                           const at::Tensor& encoder_hidden_states, const at::Tensor& controlnet_cond,
                           double conditioning_scale = 1.0, bool guess_mode = false,
                           const UNetAddedConditions& added = UNetAddedConditions()) const;

  void to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype);
  at::ScalarType dtype() const { return conv_in_.weight.scalar_type(); }
  c10::Device device() const { return conv_in_.weight.device(); }
  const ControlNetConfig& config() const { return config_; }
  int64_t num_parameters() const;
  void apply(const ParameterFn& fn);
  // Its streamable blocks, for sequential offloading.
  void for_each_unit(const UnitVisitor& visit);

 private:
  void check_inputs(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& encoder_hidden_states,
                    const at::Tensor& controlnet_cond, const UNetAddedConditions& added) const;
  ControlNetOutput scaled(std::vector<at::Tensor> down, at::Tensor mid, double conditioning_scale,
                          bool guess_mode) const;

  ControlNetConfig config_;
  Conv2d conv_in_;
  TimestepEmbedding time_embedding_;
  std::optional<TimestepEmbedding> add_embedding_;
  ControlNetConditioningEmbedding controlnet_cond_embedding_;
  std::vector<DownBlock2D> down_blocks_;
  std::vector<Conv2d> controlnet_down_blocks_;  // 1x1, one per skip connection
  MidBlock2D mid_block_;
  Conv2d controlnet_mid_block_;  // 1x1
};

}  // namespace nd
