// Mirrors diffusers UNet2DConditionModel (unets/unet_2d_condition.py) for the SD 1.x/2.x/XL family
// (positional time embedding, cross-attention down/mid/up blocks, any in_channels: inpainting
// UNets take 9) and the Kandinsky 2.2 decoder (image_embeds projected to the encoder states and
// added to the time embedding, SimpleCrossAttn / Resnet{Down,Up}sample blocks, scale_shift resnets).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/cuda_graph.h"
#include "io/json_config.h"
#include "io/state_dict.h"
#include "models/embeddings.h"
#include "models/encoder_key_values.h"
#include "models/unets/unet_2d_blocks.h"

namespace nd {

struct UNet2DConditionConfig {
  // Keys and defaults are diffusers' constructor arguments.
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  bool center_input_sample = false;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  std::vector<std::string> down_block_types = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                               "CrossAttnDownBlock2D", "DownBlock2D"};
  std::string mid_block_type = "UNetMidBlock2DCrossAttn";
  std::vector<std::string> up_block_types = {"UpBlock2D", "CrossAttnUpBlock2D",
                                             "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
  std::vector<int64_t> only_cross_attention;  // per block, 0/1
  std::vector<int64_t> block_out_channels = {320, 640, 1280, 1280};
  std::vector<int64_t> layers_per_block;             // per block
  int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  Activation act_fn = Activation::Silu;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  std::vector<int64_t> cross_attention_dim;          // per block
  std::vector<int64_t> transformer_layers_per_block;  // per block
  // diffusers' legacy naming: "attention_head_dim" holds the number of heads per block.
  std::vector<int64_t> num_attention_heads;
  bool use_linear_projection = false;
  bool upcast_attention = false;
  double resnet_out_scale_factor = 1.0;
  int64_t conv_in_kernel = 3;
  int64_t conv_out_kernel = 3;
  // SDXL's micro-conditioning: "text_time" adds an embedding of the pooled text embedding and the
  // sinusoidal projection of add_time_ids to the time embedding; empty means none (SD 1.x/2.x).
  std::string addition_embed_type;
  int64_t addition_time_embed_dim = 0;
  int64_t projection_class_embeddings_input_dim = 0;
  // Kandinsky 2.2: addition_embed_type "image" (ImageTimeEmbedding of image_embeds) and
  // encoder_hid_dim_type "image_proj" (ImageProjection of image_embeds replaces the encoder
  // states); encoder_hid_dim is the image embedding's width. 0 / empty: none.
  int64_t encoder_hid_dim = 0;
  std::string encoder_hid_dim_type;
  TimeEmbeddingNorm resnet_time_scale_shift = TimeEmbeddingNorm::kDefault;
  // num_class_embeds (with class_embed_type None): an nn.Embedding of class labels added to the time
  // embedding (the x4 upscaler's noise level). 0: none.
  int64_t num_class_embeds = 0;
  bool mid_block_only_cross_attention = false;

  // Unsupported options raise ValueError naming the key and the file. A ControlNetModel's config
  // describes only the down half (no up_block_types): with_up_blocks false leaves them empty.
  static UNet2DConditionConfig from_json(const io::JsonConfig& config, bool with_up_blocks = true);
  std::size_t num_blocks() const { return block_out_channels.size(); }
};

// diffusers' added_cond_kwargs: text_embeds/time_ids for addition_embed_type="text_time" (SDXL),
// image_embeds for "image" / encoder_hid_dim_type "image_proj" (Kandinsky 2.2).
struct UNetAddedConditions {
  at::Tensor text_embeds;   // [B, pooled_dim]
  at::Tensor time_ids;      // [B, n]: n * addition_time_embed_dim + pooled_dim = projection input
  at::Tensor image_embeds;  // [B, encoder_hid_dim]
  at::Tensor class_labels;  // [B] or [1] integers, for num_class_embeds (diffusers' forward argument)
};

// diffusers' down_block_additional_residuals / mid_block_additional_residual: a ControlNet's
// outputs, added to the skip connections (in the order the down blocks make them, conv_in's
// first) and to the mid block's output.
struct UNetControlResiduals {
  std::vector<at::Tensor> down;
  at::Tensor mid;
};

// One UNet call's inputs, by diffusers' forward argument names.
struct UNetInputs {
  at::Tensor sample;                 // [B, in_channels, H, W]
  at::Tensor timestep;               // scalar, [B] or [1]
  at::Tensor encoder_hidden_states;  // [B, S, cross_attention_dim]; unread with encoder_hid_dim_type "image_proj"
  UNetAddedConditions added;
  std::optional<UNetControlResiduals> control;  // down_block_additional_residuals, mid_block_additional_residual
  // From project_encoder_states for these encoder states: cross-attention reads its keys and values there.
  const EncoderKeyValues* projected = nullptr;
};

class UNet2DConditionModel {
 public:
  static UNet2DConditionModel load(const UNet2DConditionConfig& config,
                                   const io::StateDict& state_dict, const std::string& origin,
                                   std::optional<at::ScalarType> dtype);

  // sample: [B, in_channels, H, W]; timestep: scalar or [B] (or [1]); encoder_hidden_states:
  // [B, S, cross_attention_dim] (ignored, may be undefined, with encoder_hid_dim_type "image_proj").
  // Returns [B, out_channels, H, W]. With `projected` (from project_encoder_states, for the same
  // encoder states), cross-attention reads its keys and values from there.
  at::Tensor forward(const UNetInputs& inputs) const;
  at::Tensor forward(const at::Tensor& sample, const at::Tensor& timestep,
                     const at::Tensor& encoder_hidden_states,
                     const UNetAddedConditions& added = UNetAddedConditions(),
                     const EncoderKeyValues* projected = nullptr,
                     const UNetControlResiduals* control = nullptr) const;

  // The keys and values every cross-attention layer projects from the encoder states (for
  // encoder_hid_dim_type "image_proj", from added.image_embeds): the same at every step of one
  // prompt, so a denoising loop projects them once and passes them to each forward.
  EncoderKeyValues project_encoder_states(const at::Tensor& encoder_hidden_states,
                                          const UNetAddedConditions& added = UNetAddedConditions()) const;
  // Its attention layers that read the encoder states.
  void for_each_cross_attention(const CrossAttentionVisitor& visit) const;
  void for_each_attention(const AttentionVisitor& visit);
  // Ref: diffusers UNet2DConditionModel.fuse_qkv_projections / unfuse_qkv_projections (see
  // Attention::fuse_projections). Raises ValueError for a UNet with added key/value projections.
  void fuse_qkv_projections();
  void unfuse_qkv_projections();
  // Ref: diffusers enable_freeu / disable_freeu (FreeU() is off).
  void set_freeu(const FreeU& freeu);

  void to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype);
  at::ScalarType dtype() const { return conv_in_.weight.scalar_type(); }
  c10::Device device() const { return conv_in_.weight.device(); }
  const UNet2DConditionConfig& config() const { return config_; }
  int64_t num_parameters() const;
  void apply(const ParameterFn& fn);
  // Its streamable blocks, for sequential offloading.
  void for_each_unit(const UnitVisitor& visit);

 private:
  // Checks every input against the config before any work (and before any CUDA graph capture).
  void check_inputs(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& encoder_hidden_states,
                    const UNetAddedConditions& added) const;
  void check_encoder_inputs(int64_t batch, const at::Tensor& encoder_hidden_states,
                            const UNetAddedConditions& added) const;
  void check_projections(const EncoderKeyValues& projected, int64_t batch) const;
  // The residuals must match the skip connections this sample makes, one for one.
  void check_control(const UNetControlResiduals& control, const at::Tensor& sample) const;
  // The forward proper, on inputs already on the model's device: the unit a CUDA graph captures.
  at::Tensor forward_on_device(const UNetInputs& in) const;
  // What cross-attention attends to: the encoder states, or the image tokens that replace them.
  at::Tensor encoder_states_for(const at::Tensor& encoder_hidden_states, const at::Tensor& image_embeds) const;
  at::Tensor time_embedding_for(const at::Tensor& timestep, int64_t batch, at::ScalarType dtype) const;
  at::Tensor addition_embedding_for(const UNetAddedConditions& added, int64_t batch) const;

  UNet2DConditionConfig config_;
  Conv2d conv_in_;
  TimestepEmbedding time_embedding_;
  std::optional<TimestepEmbedding> add_embedding_;
  std::optional<ImageTimeEmbedding> image_add_embedding_;  // checkpoint key "add_embedding"
  std::optional<ImageProjection> encoder_hid_proj_;
  std::optional<Embedding> class_embedding_;
  std::vector<DownBlock2D> down_blocks_;
  MidBlock2D mid_block_;
  std::vector<UpBlock2D> up_blocks_;
  GroupNorm conv_norm_out_;
  Conv2d conv_out_;
  void visit_parameters(const ParameterFn& fn);

  // Captured graphs hold the weights' addresses: apply() starts a new cache when they move.
  ModelGraphs graphs_;
};

// The parts of UNet2DConditionModel.__init__ and forward that diffusers' ControlNetModel repeats
// for its copy of the UNet's down half.
UNetBlockConfig unet_block_base(const UNet2DConditionConfig& config);
std::vector<DownBlock2D> load_unet_down_blocks(const WeightLoader& w, const UNet2DConditionConfig& config);
MidBlock2D load_unet_mid_block(const WeightLoader& w, const UNet2DConditionConfig& config);
// Ref: diffusers get_time_embed + time_embedding: [B, time_embed_dim].
at::Tensor unet_time_embedding(const TimestepEmbedding& mlp, const UNet2DConditionConfig& config,
                               const at::Tensor& timestep, int64_t batch, at::ScalarType dtype, c10::Device device);
// Ref: diffusers get_aug_embed, "text_time" (SDXL): [B, time_embed_dim].
at::Tensor unet_text_time_embedding(const TimestepEmbedding& add_embedding, const UNet2DConditionConfig& config,
                                    const UNetAddedConditions& added, int64_t batch, at::ScalarType dtype,
                                    c10::Device device);

}  // namespace nd
