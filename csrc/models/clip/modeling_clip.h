// Mirrors transformers CLIPTextModel, CLIPTextModelWithProjection and CLIPVisionModelWithProjection
// (models/clip/modeling_clip.py): SD 1.5's text encoder, SDXL's second encoder, Kandinsky's prior
// text and image encoders.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <optional>
#include <string>
#include <vector>

#include "io/json_config.h"
#include "io/state_dict.h"
#include "models/activations.h"
#include "models/layers.h"

namespace nd {

struct CLIPTextConfig {
  // Defaults are transformers' CLIPTextConfig constructor defaults, used when config.json omits a key.
  int64_t vocab_size = 49408;
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t projection_dim = 512;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 8;
  int64_t max_position_embeddings = 77;
  Activation hidden_act = Activation::QuickGelu;
  double layer_norm_eps = 1e-5;
  // Pooling depends on it: 2 marks configs from before transformers PR #24773 (SD 1.5's), which
  // pool at the highest token id rather than at the first eos.
  int64_t eos_token_id = 49407;

  static CLIPTextConfig from_json(const io::JsonConfig& config);
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

// What the encoder layers (CLIPEncoder) of both towers are built from. The text tower attends
// causally; the vision tower sees every patch.
struct CLIPEncoderConfig {
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_attention_heads = 1;
  Activation hidden_act = Activation::QuickGelu;
  double layer_norm_eps = 1e-5;
  bool causal = true;

  CLIPEncoderConfig() = default;
  CLIPEncoderConfig(const CLIPTextConfig& c)  // NOLINT: the text tower's layers, implicitly
      : hidden_size(c.hidden_size), intermediate_size(c.intermediate_size),
        num_attention_heads(c.num_attention_heads), hidden_act(c.hidden_act),
        layer_norm_eps(c.layer_norm_eps), causal(true) {}
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

struct CLIPVisionConfig {
  // Defaults are transformers' CLIPVisionConfig constructor defaults (ViT-B/32).
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t projection_dim = 512;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 32;
  Activation hidden_act = Activation::QuickGelu;
  double layer_norm_eps = 1e-5;

  // Reads a CLIPVisionConfig, or the `vision_config` of a full CLIPConfig.
  static CLIPVisionConfig from_json(const io::JsonConfig& config);
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  CLIPEncoderConfig encoder() const;
};

struct CLIPTextOutput {
  at::Tensor last_hidden_state;            // [B, L, hidden]
  at::Tensor pooler_output;                // [B, hidden]
  std::optional<at::Tensor> text_embeds;   // [B, projection_dim], with projection only
  std::vector<at::Tensor> hidden_states;   // embeddings + every layer, before the final norm
};

class CLIPAttention {
 public:
  static CLIPAttention load(const WeightLoader& w, const CLIPEncoderConfig& config);
  // x: [B, L, hidden]; mask: boolean [B, 1, L, L] (true = attend) or undefined: causal only
  // (text tower) or no mask at all (vision tower).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask) const;
  void apply(const ParameterFn& fn);

 private:
  Linear q_proj_, k_proj_, v_proj_, out_proj_;
  int64_t num_heads_ = 0;
  int64_t head_dim_ = 0;
  bool causal_ = true;
};

class CLIPEncoderLayer {
 public:
  static CLIPEncoderLayer load(const WeightLoader& w, const CLIPEncoderConfig& config);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask) const;
  void apply(const ParameterFn& fn);

 private:
  CLIPAttention self_attn_;
  LayerNorm layer_norm1_, layer_norm2_;
  Linear fc1_, fc2_;  // mlp.fc1, mlp.fc2
  Activation act_ = Activation::QuickGelu;
};

class CLIPTextModel {
 public:
  // `with_projection` builds CLIPTextModelWithProjection. Keys may carry transformers v4's
  // "text_model." prefix (every published checkpoint) or not (transformers v5 CLIPTextModel).
  static CLIPTextModel load(const CLIPTextConfig& config, const io::StateDict& state_dict,
                            const std::string& origin, std::optional<at::ScalarType> dtype,
                            bool with_projection);

  // input_ids: [B, L] integer; attention_mask: optional [B, L] of 0/1.
  CLIPTextOutput forward(const at::Tensor& input_ids, const std::optional<at::Tensor>& attention_mask,
                         bool output_hidden_states) const;

  // The final LayerNorm alone: diffusers applies it to an earlier layer's hidden state for clip_skip.
  at::Tensor final_layer_norm(const at::Tensor& hidden) const { return final_layer_norm_.forward(hidden); }

  void to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype);
  at::ScalarType dtype() const { return token_embedding_.weight.scalar_type(); }
  c10::Device device() const { return token_embedding_.weight.device(); }
  const CLIPTextConfig& config() const { return config_; }
  bool with_projection() const { return text_projection_.has_value(); }
  int64_t num_parameters() const;
  void apply(const ParameterFn& fn);
  // Its encoder layers, for sequential offloading.
  void for_each_unit(const UnitVisitor& visit);

 private:
  at::Tensor attention_mask_for(const at::Tensor& input_ids,
                                const std::optional<at::Tensor>& attention_mask) const;
  at::Tensor pool(const at::Tensor& last_hidden_state, const at::Tensor& input_ids) const;

  CLIPTextConfig config_;
  Embedding token_embedding_, position_embedding_;
  std::vector<CLIPEncoderLayer> layers_;
  LayerNorm final_layer_norm_;
  std::optional<Linear> text_projection_;
};

// transformers' CLIPTextModelWithProjection: the same text tower plus `text_projection`, whose
// output is `text_embeds`. A distinct type so the bindings can expose transformers' two classes.
class CLIPTextModelWithProjection : public CLIPTextModel {
 public:
  explicit CLIPTextModelWithProjection(CLIPTextModel model) : CLIPTextModel(std::move(model)) {}
};

struct CLIPVisionOutput {
  at::Tensor image_embeds;               // [B, projection_dim]
  at::Tensor last_hidden_state;          // [B, 1 + num_patches, hidden]
  at::Tensor pooler_output;              // [B, hidden]: post_layernorm of the class token
  std::vector<at::Tensor> hidden_states;  // embeddings (after pre_layrnorm) + every layer
};

// transformers' CLIPVisionModelWithProjection: ViT patch embedding with a class token,
// pre_layrnorm (sic, transformers' key), the encoder, post_layernorm of the class token, and
// `visual_projection` to `image_embeds`.
class CLIPVisionModelWithProjection {
 public:
  // Keys carry "vision_model." (transformers v4 and v5 alike) or not; visual_projection is top level.
  static CLIPVisionModelWithProjection load(const CLIPVisionConfig& config, const io::StateDict& state_dict,
                                            const std::string& origin, std::optional<at::ScalarType> dtype);

  // pixel_values: [B, num_channels, image_size, image_size] floating.
  CLIPVisionOutput forward(const at::Tensor& pixel_values, bool output_hidden_states) const;

  void to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype);
  at::ScalarType dtype() const { return class_embedding_.scalar_type(); }
  c10::Device device() const { return class_embedding_.device(); }
  const CLIPVisionConfig& config() const { return config_; }
  int64_t num_parameters() const;
  void apply(const ParameterFn& fn);
  // Its encoder layers, for sequential offloading.
  void for_each_unit(const UnitVisitor& visit);

 private:
  CLIPVisionConfig config_;
  at::Tensor class_embedding_;  // [hidden]
  Conv2d patch_embedding_;      // no bias, stride = kernel = patch_size
  Embedding position_embedding_;
  LayerNorm pre_layrnorm_, post_layernorm_;
  std::vector<CLIPEncoderLayer> layers_;
  Linear visual_projection_;
};

}  // namespace nd
