#include "models/clip/modeling_clip.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "offload/streaming.h"
#include "runtime/fused_ops.h"

namespace nd {

CLIPTextConfig CLIPTextConfig::from_json(const io::JsonConfig& json) {
  CLIPTextConfig c;
  c.vocab_size = json.get_int("vocab_size", c.vocab_size);
  c.hidden_size = json.get_int("hidden_size", c.hidden_size);
  c.intermediate_size = json.get_int("intermediate_size", c.intermediate_size);
  c.projection_dim = json.get_int("projection_dim", c.projection_dim);
  c.num_hidden_layers = json.get_int("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = json.get_int("num_attention_heads", c.num_attention_heads);
  c.max_position_embeddings = json.get_int("max_position_embeddings", c.max_position_embeddings);
  c.hidden_act = parse_activation(json.get_string("hidden_act", "quick_gelu"), "hidden_act",
                                  json.origin());
  c.layer_norm_eps = json.get_double("layer_norm_eps", c.layer_norm_eps);
  c.eos_token_id = json.get_int("eos_token_id", c.eos_token_id);
  const auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) json.fail(key, "expected a positive value, got " + std::to_string(v));
  };
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("intermediate_size", c.intermediate_size);
  positive("projection_dim", c.projection_dim);
  positive("num_attention_heads", c.num_attention_heads);
  positive("max_position_embeddings", c.max_position_embeddings);
  if (c.num_hidden_layers < 0) json.fail("num_hidden_layers", "expected a non-negative value");
  if (c.hidden_size % c.num_attention_heads != 0) {
    json.fail("num_attention_heads", "hidden_size " + std::to_string(c.hidden_size) +
                                         " is not divisible by " +
                                         std::to_string(c.num_attention_heads));
  }
  return c;
}

// ---- CLIPAttention -----------------------------------------------------------------------------

CLIPVisionConfig CLIPVisionConfig::from_json(const io::JsonConfig& file) {
  // A full CLIPConfig nests the vision tower's keys under "vision_config".
  const bool nested = file.has_value("vision_config") && file.json().at("vision_config").is_object();
  const io::JsonConfig json =
      nested ? io::JsonConfig(file.json().at("vision_config"), file.origin() + " (vision_config)") : file;
  CLIPVisionConfig c;
  c.hidden_size = json.get_int("hidden_size", c.hidden_size);
  c.intermediate_size = json.get_int("intermediate_size", c.intermediate_size);
  c.projection_dim = json.get_int("projection_dim", c.projection_dim);
  c.num_hidden_layers = json.get_int("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = json.get_int("num_attention_heads", c.num_attention_heads);
  c.num_channels = json.get_int("num_channels", c.num_channels);
  c.image_size = json.get_int("image_size", c.image_size);
  c.patch_size = json.get_int("patch_size", c.patch_size);
  c.hidden_act = parse_activation(json.get_string("hidden_act", "quick_gelu"), "hidden_act", json.origin());
  c.layer_norm_eps = json.get_double("layer_norm_eps", c.layer_norm_eps);
  const auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) json.fail(key, "expected a positive value, got " + std::to_string(v));
  };
  positive("hidden_size", c.hidden_size);
  positive("intermediate_size", c.intermediate_size);
  positive("projection_dim", c.projection_dim);
  positive("num_attention_heads", c.num_attention_heads);
  positive("num_channels", c.num_channels);
  positive("image_size", c.image_size);
  positive("patch_size", c.patch_size);
  if (c.num_hidden_layers < 0) json.fail("num_hidden_layers", "expected a non-negative value");
  if (c.patch_size > c.image_size) {
    json.fail("patch_size", std::to_string(c.patch_size) + " is larger than image_size " +
                                std::to_string(c.image_size));
  }
  if (c.hidden_size % c.num_attention_heads != 0) {
    json.fail("num_attention_heads", "hidden_size " + std::to_string(c.hidden_size) +
                                         " is not divisible by " + std::to_string(c.num_attention_heads));
  }
  return c;
}

CLIPEncoderConfig CLIPVisionConfig::encoder() const {
  CLIPEncoderConfig e;
  e.hidden_size = hidden_size;
  e.intermediate_size = intermediate_size;
  e.num_attention_heads = num_attention_heads;
  e.hidden_act = hidden_act;
  e.layer_norm_eps = layer_norm_eps;
  e.causal = false;  // Ref: transformers CLIPVisionTransformer: the encoder gets no mask
  return e;
}

CLIPAttention CLIPAttention::load(const WeightLoader& w, const CLIPEncoderConfig& config) {
  CLIPAttention a;
  const int64_t d = config.hidden_size;
  a.q_proj_ = Linear::load(w.child("q_proj"), d, d);
  a.k_proj_ = Linear::load(w.child("k_proj"), d, d);
  a.v_proj_ = Linear::load(w.child("v_proj"), d, d);
  a.out_proj_ = Linear::load(w.child("out_proj"), d, d);
  a.num_heads_ = config.num_attention_heads;
  a.head_dim_ = config.head_dim();
  a.causal_ = config.causal;
  return a;
}

at::Tensor CLIPAttention::forward(const at::Tensor& x, const at::Tensor& mask) const {
  const int64_t batch = x.size(0), length = x.size(1);
  const auto heads = [&](const Linear& proj) {
    return proj.forward(x).view({batch, length, num_heads_, head_dim_}).transpose(1, 2);  // [B, H, L, D]
  };
  const at::Tensor q = heads(q_proj_), k = heads(k_proj_), v = heads(v_proj_);
  const bool causal_only = !mask.defined() && causal_;
  at::Tensor out = masked_attention(q, k, v, mask, /*is_causal=*/causal_only);
  out = out.transpose(1, 2).reshape({batch, length, num_heads_ * head_dim_});  // [B, L, hidden]
  return out_proj_.forward(out);
}

void CLIPAttention::apply(const ParameterFn& fn) {
  q_proj_.apply(fn);
  k_proj_.apply(fn);
  v_proj_.apply(fn);
  out_proj_.apply(fn);
}

// ---- CLIPEncoderLayer --------------------------------------------------------------------------

CLIPEncoderLayer CLIPEncoderLayer::load(const WeightLoader& w, const CLIPEncoderConfig& config) {
  CLIPEncoderLayer layer;
  layer.self_attn_ = CLIPAttention::load(w.child("self_attn"), config);
  layer.layer_norm1_ = LayerNorm::load(w.child("layer_norm1"), config.hidden_size, config.layer_norm_eps);
  layer.layer_norm2_ = LayerNorm::load(w.child("layer_norm2"), config.hidden_size, config.layer_norm_eps);
  const WeightLoader mlp = w.child("mlp");
  layer.fc1_ = Linear::load(mlp.child("fc1"), config.hidden_size, config.intermediate_size);
  layer.fc2_ = Linear::load(mlp.child("fc2"), config.intermediate_size, config.hidden_size);
  layer.act_ = config.hidden_act;
  return layer;
}

at::Tensor CLIPEncoderLayer::forward(const at::Tensor& x, const at::Tensor& mask) const {
  stream_in(this);
  at::Tensor h = x + self_attn_.forward(layer_norm1_.forward(x), mask);
  return h + fc2_.forward(apply_activation(act_, fc1_.forward(layer_norm2_.forward(h))));
}

void CLIPEncoderLayer::apply(const ParameterFn& fn) {
  self_attn_.apply(fn);
  layer_norm1_.apply(fn);
  layer_norm2_.apply(fn);
  fc1_.apply(fn);
  fc2_.apply(fn);
}

// ---- CLIPTextModel -----------------------------------------------------------------------------

CLIPTextModel CLIPTextModel::load(const CLIPTextConfig& config, const io::StateDict& state_dict,
                                  const std::string& origin, std::optional<at::ScalarType> dtype,
                                  bool with_projection) {
  const WeightLoader root(state_dict, origin, dtype);
  const bool prefixed = root.has("text_model.embeddings.token_embedding.weight");
  const WeightLoader text = prefixed ? root.child("text_model") : root;

  CLIPTextModel m;
  m.config_ = config;
  const WeightLoader embeddings = text.child("embeddings");
  m.token_embedding_ = Embedding::load(embeddings.child("token_embedding"), config.vocab_size,
                                       config.hidden_size);
  m.position_embedding_ = Embedding::load(embeddings.child("position_embedding"),
                                          config.max_position_embeddings, config.hidden_size);
  const WeightLoader layers = text.child("encoder").child("layers");
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    m.layers_.push_back(CLIPEncoderLayer::load(layers.child(std::to_string(i)), config));
  }
  m.final_layer_norm_ = LayerNorm::load(text.child("final_layer_norm"), config.hidden_size,
                                        config.layer_norm_eps);
  if (with_projection) {
    m.text_projection_ = Linear::load(root.child("text_projection"), config.hidden_size,
                                      config.projection_dim, /*with_bias=*/false);
  }
  return m;
}

at::Tensor CLIPTextModel::attention_mask_for(const at::Tensor& input_ids,
                                             const std::optional<at::Tensor>& attention_mask) const {
  if (!attention_mask) return at::Tensor();  // causal only: SDPA's is_causal path
  const int64_t batch = input_ids.size(0), length = input_ids.size(1);
  if (attention_mask->dim() != 2 || attention_mask->size(0) != batch ||
      attention_mask->size(1) != length) {
    throw ValueError("attention_mask must have shape [" + std::to_string(batch) + ", " +
                     std::to_string(length) + "] like input_ids");
  }
  const auto options = at::TensorOptions().dtype(at::kBool).device(input_ids.device());
  const at::Tensor causal = at::ones({length, length}, options).tril();      // [L, L]
  const at::Tensor keys = attention_mask->to(input_ids.device()).ne(0);    // [B, L]
  return causal.unsqueeze(0).unsqueeze(0) & keys.view({batch, 1, 1, length});  // [B, 1, L, L]
}

at::Tensor CLIPTextModel::pool(const at::Tensor& last_hidden_state, const at::Tensor& input_ids) const {
  const at::Tensor ids = input_ids.to(at::kInt);
  // Ref: transformers CLIPTextModel.forward: eos_token_id == 2 means a pre-#24773 config, which
  // pools at the highest id (the eot token); newer configs pool at the first eos_token_id.
  const at::Tensor positions = config_.eos_token_id == 2
                                   ? ids.argmax(-1)
                                   : ids.eq(config_.eos_token_id).to(at::kInt).argmax(-1);  // [B]
  const at::Tensor rows = at::arange(last_hidden_state.size(0), positions.options().dtype(at::kLong));
  return last_hidden_state.index({rows, positions.to(at::kLong)});  // [B, hidden]
}

CLIPTextOutput CLIPTextModel::forward(const at::Tensor& input_ids,
                                      const std::optional<at::Tensor>& attention_mask,
                                      bool output_hidden_states) const {
  if (!at::isIntegralType(input_ids.scalar_type(), /*includeBool=*/false)) {
    throw TypeError("input_ids must be an integer tensor, got " +
                    std::string(c10::toString(input_ids.scalar_type())));
  }
  c10::NoGradGuard no_grad;
  // transformers flattens leading dims: [..., L] -> [B, L].
  const at::Tensor ids = input_ids.reshape({-1, input_ids.size(-1)}).to(device(), at::kLong);
  const int64_t length = ids.size(1);
  if (length > config_.max_position_embeddings) {
    throw ValueError("Sequence length must be less than max_position_embeddings (got `sequence length`: " +
                     std::to_string(length) + " and max_position_embeddings: " +
                     std::to_string(config_.max_position_embeddings));
  }
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size) {
      throw ValueError("input_ids out of range [0, " + std::to_string(config_.vocab_size) +
                       "): found " + std::to_string(lo < 0 ? lo : hi));
    }
  }
  const at::Tensor positions = at::arange(length, ids.options());
  at::Tensor x = token_embedding_.forward(ids) + position_embedding_.forward(positions);  // [B, L, hidden]
  const at::Tensor mask = attention_mask_for(ids, attention_mask);

  CLIPTextOutput out;
  if (output_hidden_states) out.hidden_states.push_back(x);
  for (const CLIPEncoderLayer& layer : layers_) {
    x = layer.forward(x, mask);
    if (output_hidden_states) out.hidden_states.push_back(x);
  }
  out.last_hidden_state = final_layer_norm_.forward(x);
  out.pooler_output = pool(out.last_hidden_state, ids);
  if (text_projection_) out.text_embeds = text_projection_->forward(out.pooler_output);
  return out;
}

void CLIPTextModel::apply(const ParameterFn& fn) {
  token_embedding_.apply(fn);
  position_embedding_.apply(fn);
  for (CLIPEncoderLayer& layer : layers_) layer.apply(fn);
  final_layer_norm_.apply(fn);
  if (text_projection_) text_projection_->apply(fn);
}

void CLIPTextModel::to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype) {
  apply(move_and_cast(device, dtype));
}

int64_t CLIPTextModel::num_parameters() const { return count_parameters(*this); }

// ---- CLIPVisionModelWithProjection ---------------------------------------------------------------

CLIPVisionModelWithProjection CLIPVisionModelWithProjection::load(const CLIPVisionConfig& config,
                                                                  const io::StateDict& state_dict,
                                                                  const std::string& origin,
                                                                  std::optional<at::ScalarType> dtype) {
  const WeightLoader root(state_dict, origin, dtype);
  const bool prefixed = root.has("vision_model.embeddings.class_embedding");
  const WeightLoader vision = prefixed ? root.child("vision_model") : root;
  const int64_t d = config.hidden_size;

  CLIPVisionModelWithProjection m;
  m.config_ = config;
  const WeightLoader embeddings = vision.child("embeddings");
  m.class_embedding_ = embeddings.get("class_embedding", {d});
  m.patch_embedding_ = Conv2d::load(embeddings.child("patch_embedding"), config.num_channels, d,
                                    config.patch_size, /*stride=*/config.patch_size, /*padding=*/0,
                                    /*with_bias=*/false);
  m.position_embedding_ = Embedding::load(embeddings.child("position_embedding"), config.num_patches() + 1, d);
  m.pre_layrnorm_ = LayerNorm::load(vision.child("pre_layrnorm"), d, config.layer_norm_eps);
  const CLIPEncoderConfig encoder = config.encoder();
  const WeightLoader layers = vision.child("encoder").child("layers");
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    m.layers_.push_back(CLIPEncoderLayer::load(layers.child(std::to_string(i)), encoder));
  }
  m.post_layernorm_ = LayerNorm::load(vision.child("post_layernorm"), d, config.layer_norm_eps);
  m.visual_projection_ = Linear::load(root.child("visual_projection"), d, config.projection_dim,
                                      /*with_bias=*/false);
  return m;
}

CLIPVisionOutput CLIPVisionModelWithProjection::forward(const at::Tensor& pixel_values,
                                                        bool output_hidden_states) const {
  if (!at::isFloatingType(pixel_values.scalar_type())) {
    throw TypeError("pixel_values must be a floating-point tensor, got " +
                    std::string(c10::toString(pixel_values.scalar_type())));
  }
  const int64_t s = config_.image_size;
  if (pixel_values.dim() != 4 || pixel_values.size(1) != config_.num_channels) {
    throw ValueError("pixel_values must have shape [batch, " + std::to_string(config_.num_channels) + ", " +
                     std::to_string(s) + ", " + std::to_string(s) + "], got " + c10::str(pixel_values.sizes()));
  }
  if (pixel_values.size(2) != s || pixel_values.size(3) != s) {
    // Ref: transformers CLIPVisionEmbeddings.forward (without interpolate_pos_encoding).
    throw ValueError("Input image size (" + std::to_string(pixel_values.size(2)) + "*" +
                     std::to_string(pixel_values.size(3)) + ") doesn't match model (" + std::to_string(s) + "*" +
                     std::to_string(s) + ").");
  }
  c10::NoGradGuard no_grad;
  const int64_t batch = pixel_values.size(0);
  const at::Tensor pixels = pixel_values.to(device(), dtype());
  const at::Tensor patches = patch_embedding_.forward(pixels).flatten(2).transpose(1, 2);  // [B, P, hidden]
  const at::Tensor cls = class_embedding_.expand({batch, 1, -1});                         // [B, 1, hidden]
  const at::Tensor positions = at::arange(config_.num_patches() + 1, pixels.options().dtype(at::kLong));
  at::Tensor x = at::cat({cls, patches}, 1) + position_embedding_.forward(positions);  // [B, 1 + P, hidden]
  x = pre_layrnorm_.forward(x);

  CLIPVisionOutput out;
  if (output_hidden_states) out.hidden_states.push_back(x);
  const at::Tensor no_mask;
  for (const CLIPEncoderLayer& layer : layers_) {
    x = layer.forward(x, no_mask);
    if (output_hidden_states) out.hidden_states.push_back(x);
  }
  out.last_hidden_state = x;
  out.pooler_output = post_layernorm_.forward(x.select(1, 0));  // the class token, [B, hidden]
  out.image_embeds = visual_projection_.forward(out.pooler_output);
  return out;
}

void CLIPVisionModelWithProjection::apply(const ParameterFn& fn) {
  class_embedding_ = fn(class_embedding_);
  patch_embedding_.apply(fn);
  position_embedding_.apply(fn);
  pre_layrnorm_.apply(fn);
  for (CLIPEncoderLayer& layer : layers_) layer.apply(fn);
  post_layernorm_.apply(fn);
  visual_projection_.apply(fn);
}

void CLIPVisionModelWithProjection::to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype) {
  apply(move_and_cast(device, dtype));
}

int64_t CLIPVisionModelWithProjection::num_parameters() const { return count_parameters(*this); }

void CLIPTextModel::for_each_unit(const UnitVisitor& visit) {
  for (CLIPEncoderLayer& layer : layers_) visit_unit(visit, layer);
}

void CLIPVisionModelWithProjection::for_each_unit(const UnitVisitor& visit) {
  for (CLIPEncoderLayer& layer : layers_) visit_unit(visit, layer);
}

}  // namespace nd
