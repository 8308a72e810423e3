#include "models/transformers/prior_transformer.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "offload/streaming.h"
#include "runtime/fused_ops.h"

namespace nd {
namespace {

// diffusers' `x or fallback` for an optional int key: absent, null and 0 all take the fallback.
int64_t optional_dim(const io::JsonConfig& json, const std::string& key) {
  const int64_t v = json.get_optional_int(key).value_or(0);
  if (v < 0) json.fail(key, "expected a positive value, got " + std::to_string(v));
  return v;
}

// An optional-string key whose diffusers default is not None: absent takes `fallback`, null is None.
std::optional<std::string> nullable_choice(const io::JsonConfig& json, const std::string& key,
                                           const std::optional<std::string>& fallback, const std::string& allowed) {
  const std::optional<std::string> v = json.has(key) ? json.get_optional_string(key) : fallback;
  if (v && *v != allowed) json.fail(key, "unsupported value \"" + *v + "\" (expected \"" + allowed + "\" or null)");
  return v;
}

std::string shape_str(const at::Tensor& t) { return c10::str(t.sizes()); }

}  // namespace

PriorTransformerConfig PriorTransformerConfig::from_json(const io::JsonConfig& json) {
  PriorTransformerConfig c;
  c.num_attention_heads = json.get_int("num_attention_heads", c.num_attention_heads);
  c.attention_head_dim = json.get_int("attention_head_dim", c.attention_head_dim);
  c.num_layers = json.get_int("num_layers", c.num_layers);
  c.embedding_dim = json.get_int("embedding_dim", c.embedding_dim);
  c.num_embeddings = json.get_int("num_embeddings", c.num_embeddings);
  c.additional_embeddings = json.get_int("additional_embeddings", c.additional_embeddings);
  c.time_embed_act_fn = parse_activation(json.get_string("time_embed_act_fn", "silu"), "time_embed_act_fn",
                                         json.origin());
  c.norm_in = nullable_choice(json, "norm_in_type", std::nullopt, "layer").has_value();
  c.embedding_proj_norm = nullable_choice(json, "embedding_proj_norm_type", std::nullopt, "layer").has_value();
  c.encoder_hid_proj = nullable_choice(json, "encoder_hid_proj_type", "linear", "linear").has_value();
  c.prd_embedding = nullable_choice(json, "added_emb_type", "prd", "prd").has_value();
  // dropout is a training option; inference never applies it (diffusers' modules are in eval mode).
  c.time_embed_dim = optional_dim(json, "time_embed_dim");
  c.embedding_proj_dim = optional_dim(json, "embedding_proj_dim");
  c.clip_embed_dim = optional_dim(json, "clip_embed_dim");
  const auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) json.fail(key, "expected a positive value, got " + std::to_string(v));
  };
  positive("num_attention_heads", c.num_attention_heads);
  positive("attention_head_dim", c.attention_head_dim);
  positive("embedding_dim", c.embedding_dim);
  if (c.num_layers < 0) json.fail("num_layers", "expected a non-negative value");
  if (c.num_embeddings < 0) json.fail("num_embeddings", "expected a non-negative value");
  if (c.additional_embeddings < 0) json.fail("additional_embeddings", "expected a non-negative value");
  if (c.time_embed_dim == 0) c.time_embed_dim = c.inner_dim();
  if (c.embedding_proj_dim == 0) c.embedding_proj_dim = c.embedding_dim;
  if (c.clip_embed_dim == 0) c.clip_embed_dim = c.embedding_dim;
  return c;
}

// ---- PriorTransformerBlock ----------------------------------------------------------------------

PriorTransformerBlock PriorTransformerBlock::load(const WeightLoader& w, const PriorTransformerConfig& config) {
  PriorTransformerBlock b;
  const int64_t d = config.inner_dim();
  b.norm1_ = LayerNorm::load(w.child("norm1"), d, 1e-5);
  b.norm3_ = LayerNorm::load(w.child("norm3"), d, 1e-5);
  const WeightLoader attn = w.child("attn1");
  b.to_q_ = Linear::load(attn.child("to_q"), d, d);
  b.to_k_ = Linear::load(attn.child("to_k"), d, d);
  b.to_v_ = Linear::load(attn.child("to_v"), d, d);
  b.to_out_ = Linear::load(attn.child("to_out").child("0"), d, d);
  const WeightLoader ff = w.child("ff").child("net");
  b.ff_in_ = Linear::load(ff.child("0").child("proj"), d, 4 * d);  // FeedForward(mult=4)
  b.ff_out_ = Linear::load(ff.child("2"), 4 * d, d);
  b.heads_ = config.num_attention_heads;
  b.head_dim_ = config.attention_head_dim;
  return b;
}

at::Tensor PriorTransformerBlock::forward(const at::Tensor& x, const at::Tensor& mask) const {
  stream_in(this);
  // Ref: diffusers BasicTransformerBlock.forward (norm_type "layer_norm", no cross-attention).
  const int64_t batch = x.size(0), length = x.size(1);
  const at::Tensor h = norm1_.forward(x);
  const auto heads = [&](const Linear& proj) {
    return proj.forward(h).view({batch, length, heads_, head_dim_}).transpose(1, 2);  // [B, H, L, D]
  };
  at::Tensor attn = masked_attention(heads(to_q_), heads(to_k_), heads(to_v_), mask, /*is_causal=*/false);
  attn = attn.transpose(1, 2).reshape({batch, length, heads_ * head_dim_});  // [B, L, inner]
  const at::Tensor y = to_out_.forward(attn) + x;
  return ff_out_.forward(at::gelu(ff_in_.forward(norm3_.forward(y)))) + y;
}

void PriorTransformerBlock::apply(const ParameterFn& fn) {
  for (LayerNorm* n : {&norm1_, &norm3_}) n->apply(fn);
  for (Linear* l : {&to_q_, &to_k_, &to_v_, &to_out_, &ff_in_, &ff_out_}) l->apply(fn);
}

// ---- PriorTransformer ----------------------------------------------------------------------------

PriorTransformer PriorTransformer::load(const PriorTransformerConfig& config, const io::StateDict& state_dict,
                                        const std::string& origin, std::optional<at::ScalarType> dtype) {
  const WeightLoader w(state_dict, origin, dtype);
  const int64_t inner = config.inner_dim();
  PriorTransformer m;
  m.config_ = config;
  const WeightLoader te = w.child("time_embedding");
  m.time_embedding_ = TimestepEmbedding{Linear::load(te.child("linear_1"), inner, config.time_embed_dim),
                                        Linear::load(te.child("linear_2"), config.time_embed_dim, inner),
                                        config.time_embed_act_fn};
  m.proj_in_ = Linear::load(w.child("proj_in"), config.embedding_dim, inner);
  if (config.embedding_proj_norm) {
    m.embedding_proj_norm_ = LayerNorm::load(w.child("embedding_proj_norm"), config.embedding_proj_dim, 1e-5);
  }
  m.embedding_proj_ = Linear::load(w.child("embedding_proj"), config.embedding_proj_dim, inner);
  if (config.encoder_hid_proj) {
    m.encoder_hidden_states_proj_ = Linear::load(w.child("encoder_hidden_states_proj"), config.embedding_dim, inner);
  }
  m.positional_embedding_ = w.get("positional_embedding", {1, config.sequence_length(), inner});
  if (config.prd_embedding) m.prd_embedding_ = w.get("prd_embedding", {1, 1, inner});
  const WeightLoader blocks = w.child("transformer_blocks");
  for (int64_t i = 0; i < config.num_layers; ++i) {
    m.transformer_blocks_.push_back(PriorTransformerBlock::load(blocks.child(std::to_string(i)), config));
  }
  if (config.norm_in) m.norm_in_ = LayerNorm::load(w.child("norm_in"), inner, 1e-5);
  m.norm_out_ = LayerNorm::load(w.child("norm_out"), inner, 1e-5);
  m.proj_to_clip_embeddings_ = Linear::load(w.child("proj_to_clip_embeddings"), inner, config.clip_embed_dim);
  m.clip_mean_ = w.get("clip_mean", {1, config.clip_embed_dim});
  m.clip_std_ = w.get("clip_std", {1, config.clip_embed_dim});
  return m;
}

at::Tensor PriorTransformer::combined_mask(const at::Tensor& attention_mask, int64_t length,
                                           at::ScalarType dtype) const {
  const int64_t batch = attention_mask.size(0);
  const int64_t n = config_.sequence_length();
  if (attention_mask.size(1) + config_.additional_embeddings != n || length != n) {
    throw ValueError("attention_mask of shape " + shape_str(attention_mask) + " with " +
                     std::to_string(length) + " tokens does not fit the prior's causal mask of " + std::to_string(n) +
                     " (num_embeddings + additional_embeddings)");
  }
  const auto options = at::TensorOptions().dtype(dtype).device(device());
  // Ref: diffusers __init__: causal_attention_mask = full(-10000).triu_(1).
  const at::Tensor causal = at::full({n, n}, -10000.0, options).triu(1);                   // [L, L]
  at::Tensor mask = (1 - attention_mask.to(device()).to(dtype)) * -10000.0;                  // [B, S]
  mask = at::constant_pad_nd(mask, {0, config_.additional_embeddings}, 0.0);                // [B, L]
  return (mask.unsqueeze(1) + causal.unsqueeze(0)).to(dtype).view({batch, 1, n, n});       // [B, 1, L, L]
}

at::Tensor PriorTransformer::forward(const at::Tensor& hidden_states, const at::Tensor& timestep,
                                     const at::Tensor& proj_embedding,
                                     const std::optional<at::Tensor>& encoder_hidden_states,
                                     const std::optional<at::Tensor>& attention_mask) const {
  if (!hidden_states.defined() || !timestep.defined() || !proj_embedding.defined()) {
    throw ValueError("PriorTransformer needs hidden_states, timestep and proj_embedding");
  }
  c10::NoGradGuard no_grad;
  // Everything moves to the model's device outside the graph (a shape error raises in the graph's
  // warm-up run, before any capture); the timestep and the mask keep their dtypes.
  const auto on_device = [&](const at::Tensor& t, bool cast) { return cast ? t.to(device(), dtype()) : t.to(device()); };
  const std::vector<at::Tensor> inputs{
      on_device(hidden_states, true), on_device(timestep, false), on_device(proj_embedding, true),
      encoder_hidden_states ? on_device(*encoder_hidden_states, true) : at::Tensor(),
      attention_mask ? on_device(*attention_mask, false) : at::Tensor()};
  const auto body = [this](const std::vector<at::Tensor>& in) {
    c10::NoGradGuard no_grad_in_capture;
    return forward_on_device(in[0], in[1], in[2], in[3].defined() ? std::optional<at::Tensor>(in[3]) : std::nullopt,
                             in[4].defined() ? std::optional<at::Tensor>(in[4]) : std::nullopt);
  };
  // Streamed weights change address block by block, so a captured graph could not replay them.
  return streaming_active() ? body(inputs) : graphs_.run(inputs, body);
}

at::Tensor PriorTransformer::forward_on_device(const at::Tensor& hidden_states_in, const at::Tensor& timestep,
                                               const at::Tensor& proj_embedding_in,
                                               const std::optional<at::Tensor>& encoder_hidden_states_in,
                                               const std::optional<at::Tensor>& attention_mask) const {
  // Ref: diffusers PriorTransformer.forward.
  const int64_t inner = config_.inner_dim();
  if (hidden_states_in.dim() < 2 || hidden_states_in.dim() > 3 ||
      hidden_states_in.size(-1) != config_.embedding_dim) {
    throw ValueError("hidden_states must have shape [batch, " + std::to_string(config_.embedding_dim) +
                     "], got " + shape_str(hidden_states_in));
  }
  const int64_t batch = hidden_states_in.size(0);
  if (proj_embedding_in.dim() < 2 || proj_embedding_in.size(0) != batch ||
      proj_embedding_in.size(-1) != config_.embedding_proj_dim) {
    throw ValueError("proj_embedding must have shape [" + std::to_string(batch) + ", " +
                     std::to_string(config_.embedding_proj_dim) + "], got " + shape_str(proj_embedding_in));
  }
  if (timestep.dim() > 1 || (timestep.dim() == 1 && timestep.size(0) != 1 && timestep.size(0) != batch)) {
    throw ValueError("timestep must be a number, or a tensor of 1 or batch (" + std::to_string(batch) +
                     ") values, got shape " + shape_str(timestep));
  }
  c10::NoGradGuard no_grad;
  const at::ScalarType dt = dtype();
  const c10::Device dev = device();

  at::Tensor timesteps = timestep.dim() == 0 ? timestep.unsqueeze(0) : timestep;
  timesteps = (timesteps.to(dev) * at::ones({batch}, timesteps.options().device(dev)));  // [B]
  const at::Tensor time_embeddings =
      time_embedding_.forward(get_timestep_embedding(timesteps, inner, true, 0.0).to(dt));  // [B, inner]

  at::Tensor proj_embedding = proj_embedding_in.to(dev, dt);
  if (embedding_proj_norm_) proj_embedding = embedding_proj_norm_->forward(proj_embedding);
  at::Tensor proj_embeddings = embedding_proj_.forward(proj_embedding);

  std::vector<at::Tensor> tokens;
  int64_t additional_embeddings_len = 0;
  if (encoder_hidden_states_proj_) {
    if (!encoder_hidden_states_in) {
      throw ValueError("`encoder_hidden_states_proj` requires `encoder_hidden_states` to be set");
    }
    const at::Tensor& e = *encoder_hidden_states_in;
    if (e.dim() != 3 || e.size(0) != batch || e.size(2) != config_.embedding_dim) {
      throw ValueError("encoder_hidden_states must have shape [" + std::to_string(batch) + ", S, " +
                       std::to_string(config_.embedding_dim) + "], got " + shape_str(e));
    }
    tokens.push_back(encoder_hidden_states_proj_->forward(e.to(dev, dt)));  // [B, S, inner]
  } else if (encoder_hidden_states_in) {
    const at::Tensor& e = *encoder_hidden_states_in;
    if (e.dim() != 3 || e.size(0) != batch || e.size(2) != inner) {
      throw ValueError("encoder_hidden_states must have shape [" + std::to_string(batch) + ", S, " +
                       std::to_string(inner) + "] (no encoder_hid_proj), got " + shape_str(e));
    }
    tokens.push_back(e.to(dev, dt));
  }
  if (!tokens.empty()) additional_embeddings_len += tokens.front().size(1);

  at::Tensor hidden_states = proj_in_.forward(hidden_states_in.to(dev, dt));
  if (proj_embeddings.dim() == 2) proj_embeddings = proj_embeddings.unsqueeze(1);  // [B, 1, inner]
  if (hidden_states.dim() == 2) hidden_states = hidden_states.unsqueeze(1);        // [B, 1, inner]
  tokens.push_back(proj_embeddings);
  tokens.push_back(time_embeddings.unsqueeze(1));
  tokens.push_back(hidden_states);
  if (prd_embedding_.defined()) tokens.push_back(prd_embedding_.expand({batch, -1, -1}));
  hidden_states = at::cat(tokens, 1);  // [B, L, inner]
  additional_embeddings_len += proj_embeddings.size(1) + 1;
  const int64_t length = hidden_states.size(1);

  at::Tensor positional = positional_embedding_;
  if (positional.size(1) < length) {
    // Ref: diffusers: pads the positions with zeros for the added tokens (checkpoints trained
    // without positions for them).
    positional = at::constant_pad_nd(
        positional, {0, 0, additional_embeddings_len, prd_embedding_.defined() ? prd_embedding_.size(1) : 0}, 0.0);
  }
  if (positional.size(1) != length) {
    throw ValueError("the prior's " + std::to_string(length) + " tokens do not match its positional_embedding of " +
                     std::to_string(positional.size(1)) + " (num_embeddings + additional_embeddings)");
  }
  hidden_states = hidden_states + positional;

  at::Tensor mask;
  if (attention_mask) {
    if (attention_mask->dim() != 2 || attention_mask->size(0) != batch) {
      throw ValueError("attention_mask must have shape [" + std::to_string(batch) + ", S], got " +
                       shape_str(*attention_mask));
    }
    mask = combined_mask(*attention_mask, length, dt);
  }
  if (norm_in_) hidden_states = norm_in_->forward(hidden_states);
  for (const PriorTransformerBlock& block : transformer_blocks_) hidden_states = block.forward(hidden_states, mask);
  hidden_states = norm_out_.forward(hidden_states);
  hidden_states = prd_embedding_.defined() ? hidden_states.select(1, length - 1)                      // [B, inner]
                                           : hidden_states.slice(1, additional_embeddings_len);  // [B, n, inner]
  return proj_to_clip_embeddings_.forward(hidden_states);
}

at::Tensor PriorTransformer::post_process_latents(const at::Tensor& prior_latents) const {
  c10::NoGradGuard no_grad;
  return prior_latents * clip_std_.to(prior_latents.device()) + clip_mean_.to(prior_latents.device());
}

void PriorTransformer::apply(const ParameterFn& fn) {
  visit_parameters(fn);
  graphs_.weights_visited([this](const ParameterFn& f) { visit_parameters(f); });
}

void PriorTransformer::visit_parameters(const ParameterFn& fn) {
  time_embedding_.apply(fn);
  proj_in_.apply(fn);
  if (embedding_proj_norm_) embedding_proj_norm_->apply(fn);
  embedding_proj_.apply(fn);
  if (encoder_hidden_states_proj_) encoder_hidden_states_proj_->apply(fn);
  positional_embedding_ = fn(positional_embedding_);
  if (prd_embedding_.defined()) prd_embedding_ = fn(prd_embedding_);
  for (PriorTransformerBlock& block : transformer_blocks_) block.apply(fn);
  if (norm_in_) norm_in_->apply(fn);
  norm_out_.apply(fn);
  proj_to_clip_embeddings_.apply(fn);
  clip_mean_ = fn(clip_mean_);
  clip_std_ = fn(clip_std_);
}

void PriorTransformer::to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype) {
  apply(move_and_cast(device, dtype));
  graphs_.drop();
}

int64_t PriorTransformer::num_parameters() const { return count_parameters(*this); }

void PriorTransformer::for_each_unit(const UnitVisitor& visit) {
  for (PriorTransformerBlock& block : transformer_blocks_) visit_unit(visit, block);
}

}  // namespace nd
