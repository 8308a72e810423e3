#include "models/unets/unet_2d_condition.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "runtime/memory_format.h"
#include "offload/streaming.h"

namespace nd {
namespace {

// Options of diffusers' UNet2DConditionModel that this engine does not implement yet: present
// with a non-default value, they must fail loudly rather than load a different network.
void reject_unsupported(const io::JsonConfig& json) {
  const char* must_be_null[] = {"class_embed_type",     "time_cond_proj_dim",
                                "time_embedding_dim",   "time_embedding_act_fn",
                                "timestep_post_act",    "cross_attention_norm",
                                "reverse_transformer_layers_per_block",
                                "num_attention_heads"};
  for (const char* key : must_be_null) {
    if (json.has_value(key)) json.fail(key, "unsupported value " + json.json().at(key).dump());
  }
  if (json.get_bool("dual_cross_attention", false)) json.fail("dual_cross_attention", "unsupported value true");
  if (json.get_bool("class_embeddings_concat", false)) json.fail("class_embeddings_concat", "unsupported value true");
  if (json.get_bool("resnet_skip_time_act", false)) json.fail("resnet_skip_time_act", "unsupported value true");
  const auto expect = [&](const char* key, const std::string& value) {
    const std::string got = json.get_string(key, value);
    if (got != value) json.fail(key, "unsupported value \"" + got + "\"");
  };
  expect("time_embedding_type", "positional");
  expect("attention_type", "default");
}

std::vector<int64_t> bools_per_block(const io::JsonConfig& json, const char* key, std::size_t n) {
  if (!json.has_value(key)) return std::vector<int64_t>(n, 0);
  const io::Json& v = json.json().at(key);
  if (v.is_boolean()) return std::vector<int64_t>(n, v.get<bool>() ? 1 : 0);
  if (!v.is_array() || v.size() != n) json.fail(key, "expected a bool or " + std::to_string(n) + " bools");
  std::vector<int64_t> out;
  for (const io::Json& item : v) {
    if (!item.is_boolean()) json.fail(key, "expected bools, got " + item.dump());
    out.push_back(item.get<bool>() ? 1 : 0);
  }
  return out;
}

bool has_cross_attention(const std::string& type) {
  return type == "CrossAttnDownBlock2D" || type == "CrossAttnUpBlock2D" || type == "SimpleCrossAttnDownBlock2D" ||
         type == "SimpleCrossAttnUpBlock2D";
}

// SimpleCrossAttn* blocks attend with added key/value projections (AttnAddedKVProcessor).
bool is_simple_cross_attention(const std::string& type) {
  return type == "SimpleCrossAttnDownBlock2D" || type == "SimpleCrossAttnUpBlock2D";
}

// Blocks whose down/upsampler is a ResnetBlock2D(down/up=True) rather than a conv.
bool has_resnet_sampler(const std::string& type) {
  return type == "ResnetDownsampleBlock2D" || type == "SimpleCrossAttnDownBlock2D" ||
         type == "ResnetUpsampleBlock2D" || type == "SimpleCrossAttnUpBlock2D";
}

bool is_one_of(const std::string& value, std::initializer_list<const char*> choices) {
  for (const char* choice : choices) {
    if (value == choice) return true;
  }
  return false;
}

}  // namespace

UNet2DConditionConfig UNet2DConditionConfig::from_json(const io::JsonConfig& json, bool with_up_blocks) {
  reject_unsupported(json);
  UNet2DConditionConfig c;
  if (!with_up_blocks) c.up_block_types.clear();
  c.in_channels = json.get_int("in_channels", c.in_channels);
  c.out_channels = json.get_int("out_channels", c.out_channels);
  c.center_input_sample = json.get_bool("center_input_sample", c.center_input_sample);
  c.flip_sin_to_cos = json.get_bool("flip_sin_to_cos", c.flip_sin_to_cos);
  c.freq_shift = json.get_double("freq_shift", c.freq_shift);
  if (json.has_value("down_block_types")) c.down_block_types = json.get_string_list("down_block_types");
  if (with_up_blocks && json.has_value("up_block_types")) c.up_block_types = json.get_string_list("up_block_types");
  c.mid_block_type = json.get_string("mid_block_type", c.mid_block_type);
  if (json.has_value("block_out_channels")) c.block_out_channels = json.get_int_list("block_out_channels");
  const std::size_t n = c.block_out_channels.size();
  if (n == 0) json.fail("block_out_channels", "expected at least one block");
  if (c.down_block_types.size() != n) json.fail("down_block_types", "must have one entry per block_out_channels");
  if (with_up_blocks && c.up_block_types.size() != n) json.fail("up_block_types", "must have one entry per block_out_channels");
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& d = c.down_block_types[i];
    if (!is_one_of(d, {"CrossAttnDownBlock2D", "DownBlock2D", "ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"})) {
      json.fail("down_block_types[" + std::to_string(i) + "]", "unsupported value \"" + d + "\"");
    }
    if (!with_up_blocks) continue;
    const std::string& u = c.up_block_types[i];
    if (!is_one_of(u, {"CrossAttnUpBlock2D", "UpBlock2D", "ResnetUpsampleBlock2D", "SimpleCrossAttnUpBlock2D"})) {
      json.fail("up_block_types[" + std::to_string(i) + "]", "unsupported value \"" + u + "\"");
    }
  }
  if (c.mid_block_type != "UNetMidBlock2DCrossAttn" && c.mid_block_type != "UNetMidBlock2DSimpleCrossAttn") {
    json.fail("mid_block_type", "unsupported value \"" + c.mid_block_type + "\"");
  }
  c.only_cross_attention = bools_per_block(json, "only_cross_attention", n);
  // Ref: diffusers __init__: a single-bool only_cross_attention also sets the mid block's, unless
  // mid_block_only_cross_attention says otherwise (it only matters for UNetMidBlock2DSimpleCrossAttn).
  const bool only_cross_is_bool = json.has_value("only_cross_attention") && json.json().at("only_cross_attention").is_boolean();
  if (json.has_value("mid_block_only_cross_attention")) {
    c.mid_block_only_cross_attention = json.get_bool("mid_block_only_cross_attention");
  } else if (only_cross_is_bool) {
    c.mid_block_only_cross_attention = c.only_cross_attention[0] != 0;
  }
  const std::string time_scale_shift = json.get_string("resnet_time_scale_shift", "default");
  if (time_scale_shift == "scale_shift") {
    c.resnet_time_scale_shift = TimeEmbeddingNorm::kScaleShift;
  } else if (time_scale_shift != "default") {
    json.fail("resnet_time_scale_shift", "unsupported value \"" + time_scale_shift + "\"");
  }
  c.layers_per_block = json.get_int_or_list("layers_per_block", n, 2);
  c.downsample_padding = json.get_int("downsample_padding", c.downsample_padding);
  c.mid_block_scale_factor = json.get_double("mid_block_scale_factor", c.mid_block_scale_factor);
  c.act_fn = parse_activation(json.get_string("act_fn", "silu"), "act_fn", json.origin());
  c.norm_num_groups = json.get_int("norm_num_groups", c.norm_num_groups);
  c.norm_eps = json.get_double("norm_eps", c.norm_eps);
  c.cross_attention_dim = json.get_int_or_list("cross_attention_dim", n, 1280);
  c.transformer_layers_per_block = json.get_int_or_list("transformer_layers_per_block", n, 1);
  c.num_attention_heads = json.get_int_or_list("attention_head_dim", n, 8);
  c.use_linear_projection = json.get_bool("use_linear_projection", c.use_linear_projection);
  c.upcast_attention = json.get_bool("upcast_attention", c.upcast_attention);
  c.resnet_out_scale_factor = json.get_double("resnet_out_scale_factor", c.resnet_out_scale_factor);
  c.conv_in_kernel = json.get_int("conv_in_kernel", c.conv_in_kernel);
  c.conv_out_kernel = json.get_int("conv_out_kernel", c.conv_out_kernel);
  if (json.has_value("encoder_hid_dim")) c.encoder_hid_dim = json.get_int("encoder_hid_dim");
  c.encoder_hid_dim_type = json.get_string("encoder_hid_dim_type", "");
  if (!c.encoder_hid_dim_type.empty() || c.encoder_hid_dim != 0) {
    // Ref: diffusers _set_encoder_hid_proj: encoder_hid_dim alone means "text_proj".
    if (c.encoder_hid_dim_type != "image_proj") {
      json.fail("encoder_hid_dim_type", "unsupported value \"" +
                                            (c.encoder_hid_dim_type.empty() ? std::string("text_proj") : c.encoder_hid_dim_type) +
                                            "\" (only \"image_proj\")");
    }
    if (c.encoder_hid_dim <= 0) json.fail("encoder_hid_dim", "must be a positive integer with encoder_hid_dim_type \"image_proj\"");
    for (int64_t dim : c.cross_attention_dim) {
      if (dim != c.cross_attention_dim[0]) json.fail("cross_attention_dim", "must be one value with encoder_hid_dim_type \"image_proj\"");
    }
  }
  if (json.has_value("num_class_embeds")) {
    c.num_class_embeds = json.get_int("num_class_embeds");
    if (c.num_class_embeds <= 0) json.fail("num_class_embeds", "must be a positive integer or null");
  }
  c.addition_embed_type = json.get_string("addition_embed_type", "");
  if (c.addition_embed_type == "image") {
    if (c.encoder_hid_dim <= 0) json.fail("encoder_hid_dim", "must be a positive integer with addition_embed_type \"image\"");
  } else if (!c.addition_embed_type.empty()) {
    if (c.addition_embed_type != "text_time") {
      json.fail("addition_embed_type", "unsupported value \"" + c.addition_embed_type + "\"");
    }
    c.addition_time_embed_dim = json.get_int("addition_time_embed_dim");
    c.projection_class_embeddings_input_dim = json.get_int("projection_class_embeddings_input_dim");
    if (c.addition_time_embed_dim <= 0) json.fail("addition_time_embed_dim", "must be positive");
    if (c.projection_class_embeddings_input_dim <= 0) {
      json.fail("projection_class_embeddings_input_dim", "must be positive");
    }
  }
  // Ref: diffusers needs the channels to split into heads only where a block has attention.
  const auto check_heads = [&](const std::string& block, int64_t channels, int64_t heads) {
    if (heads <= 0 || channels % heads != 0) {
      json.fail("attention_head_dim", block + " has " + std::to_string(channels) + " channels, not divisible into " +
                                          std::to_string(heads) + " heads");
    }
  };
  for (std::size_t i = 0; i < n; ++i) {
    if (c.block_out_channels[i] <= 0) json.fail("block_out_channels", "channels must be positive");
    if (c.num_attention_heads[i] <= 0) json.fail("attention_head_dim", "must be positive");
    if (c.layers_per_block[i] <= 0) json.fail("layers_per_block", "must be positive");
    if (c.transformer_layers_per_block[i] < 0) json.fail("transformer_layers_per_block", "must not be negative");
    if (i < c.down_block_types.size() && has_cross_attention(c.down_block_types[i])) {
      check_heads("down block " + std::to_string(i), c.block_out_channels[i], c.num_attention_heads[i]);
    }
    // Up block i has the channels of down block r = n - 1 - i, and its heads too, except that a
    // SimpleCrossAttn block reads attention_head_dim[i] (see load_unet).
    const std::size_t r = n - 1 - i;
    if (i < c.up_block_types.size() && has_cross_attention(c.up_block_types[i])) {
      const std::size_t heads_index = is_simple_cross_attention(c.up_block_types[i]) ? i : r;
      check_heads("up block " + std::to_string(i), c.block_out_channels[r], c.num_attention_heads[heads_index]);
    }
  }
  if (n > 0 && c.mid_block_type.find("CrossAttn") != std::string::npos) {
    check_heads("the mid block", c.block_out_channels.back(), c.num_attention_heads.back());
  }
  if (c.conv_in_kernel % 2 == 0 || c.conv_in_kernel <= 0) json.fail("conv_in_kernel", "must be odd");
  if (c.conv_out_kernel % 2 == 0 || c.conv_out_kernel <= 0) json.fail("conv_out_kernel", "must be odd");
  if (c.in_channels <= 0 || c.out_channels <= 0) json.fail("in_channels", "channels must be positive");
  return c;
}

UNetBlockConfig unet_block_base(const UNet2DConditionConfig& c) {
  UNetBlockConfig base;
  base.temb_channels = c.block_out_channels[0] * 4;  // time_embed_dim
  base.resnet_groups = c.norm_num_groups;
  base.resnet_eps = c.norm_eps;
  base.act = c.act_fn;
  base.use_linear_projection = c.use_linear_projection;
  base.upcast_attention = c.upcast_attention;
  base.output_scale_factor = c.resnet_out_scale_factor;
  base.resnet_time_scale_shift = c.resnet_time_scale_shift;
  return base;
}

std::vector<DownBlock2D> load_unet_down_blocks(const WeightLoader& w, const UNet2DConditionConfig& c) {
  const UNetBlockConfig base = unet_block_base(c);
  const std::size_t n = c.num_blocks();
  std::vector<DownBlock2D> blocks;
  int64_t output_channel = c.block_out_channels[0];
  for (std::size_t i = 0; i < n; ++i) {
    UNetBlockConfig b = base;
    b.in_channels = output_channel;
    output_channel = c.block_out_channels[i];
    b.out_channels = output_channel;
    b.num_layers = c.layers_per_block[i];
    b.transformer_layers = c.transformer_layers_per_block[i];
    b.has_attention = has_cross_attention(c.down_block_types[i]);
    if (is_simple_cross_attention(c.down_block_types[i])) b.attention = BlockAttention::kAddedKV;
    b.resnet_sample_change = has_resnet_sampler(c.down_block_types[i]);
    b.num_attention_heads = c.num_attention_heads[i];
    b.cross_attention_dim = c.cross_attention_dim[i];
    b.only_cross_attention = c.only_cross_attention[i] != 0;
    b.add_sample_change = i + 1 < n;
    b.downsample_padding = c.downsample_padding;
    blocks.push_back(DownBlock2D::load(w.child("down_blocks").child(std::to_string(i)), b));
  }
  return blocks;
}

MidBlock2D load_unet_mid_block(const WeightLoader& w, const UNet2DConditionConfig& c) {
  UNetBlockConfig mid = unet_block_base(c);
  mid.in_channels = mid.out_channels = c.block_out_channels.back();
  mid.has_attention = true;
  mid.num_attention_heads = c.num_attention_heads.back();
  mid.cross_attention_dim = c.cross_attention_dim.back();
  mid.transformer_layers = c.transformer_layers_per_block.back();
  if (c.mid_block_type == "UNetMidBlock2DSimpleCrossAttn") {
    // Ref: diffusers get_mid_block: attention_head_dim[-1] is the head dimension here.
    mid.attention = BlockAttention::kAddedKV;
    mid.only_cross_attention = c.mid_block_only_cross_attention;
  }
  mid.output_scale_factor = c.mid_block_scale_factor;
  return MidBlock2D::load(w.child("mid_block"), mid);
}

at::Tensor unet_time_embedding(const TimestepEmbedding& mlp, const UNet2DConditionConfig& c,
                               const at::Tensor& timestep, int64_t batch, at::ScalarType dtype, c10::Device device) {
  // Ref: diffusers UNet2DConditionModel.get_time_embed: a 0-d timestep is broadcast to the batch;
  // the projection runs in fp32 and is cast to the sample dtype before the MLP.
  at::Tensor t = timestep.to(device);
  if (t.dim() == 0) t = t.unsqueeze(0);
  t = t.expand({batch});
  const at::Tensor t_emb =
      get_timestep_embedding(t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift).to(dtype);
  return mlp.forward(t_emb);  // [B, time_embed_dim]
}

at::Tensor unet_text_time_embedding(const TimestepEmbedding& add_embedding, const UNet2DConditionConfig& c,
                                    const UNetAddedConditions& added, int64_t batch, at::ScalarType dtype,
                                    c10::Device device) {
  // Ref: diffusers UNet2DConditionModel.get_aug_embed, addition_embed_type == "text_time".
  if (!added.text_embeds.defined()) {
    throw ValueError("UNet2DConditionModel has the config param `addition_embed_type` set to 'text_time' which "
                     "requires the keyword argument `text_embeds` to be passed in `added_cond_kwargs`");
  }
  if (!added.time_ids.defined()) {
    throw ValueError("UNet2DConditionModel has the config param `addition_embed_type` set to 'text_time' which "
                     "requires the keyword argument `time_ids` to be passed in `added_cond_kwargs`");
  }
  const at::Tensor text_embeds = added.text_embeds.to(device);
  const at::Tensor time_ids = added.time_ids.to(device);
  if (text_embeds.dim() != 2 || text_embeds.size(0) != batch ||
      time_ids.numel() * c.addition_time_embed_dim / batch + text_embeds.size(1) !=
          c.projection_class_embeddings_input_dim) {
    throw ValueError("text_embeds " + c10::str(text_embeds.sizes()) + " and time_ids " + c10::str(time_ids.sizes()) +
                     " do not add up to projection_class_embeddings_input_dim=" +
                     std::to_string(c.projection_class_embeddings_input_dim) + " for batch " + std::to_string(batch));
  }
  at::Tensor time_embeds =
      get_timestep_embedding(time_ids.flatten(), c.addition_time_embed_dim, c.flip_sin_to_cos, c.freq_shift);
  time_embeds = time_embeds.reshape({batch, -1});                         // [B, n * dim]
  const at::Tensor add_embeds = at::cat({text_embeds, time_embeds}, -1);  // type-promoting, as torch.concat
  return add_embedding.forward(add_embeds.to(dtype));                     // [B, time_embed_dim]
}

UNet2DConditionModel UNet2DConditionModel::load(const UNet2DConditionConfig& c,
                                                const io::StateDict& state_dict,
                                                const std::string& origin,
                                                std::optional<at::ScalarType> dtype) {
  const WeightLoader w(state_dict, origin, dtype);
  UNet2DConditionModel m;
  m.config_ = c;
  const std::size_t n = c.num_blocks();
  const int64_t ch0 = c.block_out_channels[0];
  const int64_t time_embed_dim = ch0 * 4;
  m.conv_in_ = Conv2d::load(w.child("conv_in"), c.in_channels, ch0, c.conv_in_kernel, 1,
                            (c.conv_in_kernel - 1) / 2);
  m.time_embedding_ = TimestepEmbedding::load(w.child("time_embedding"), ch0, time_embed_dim, c.act_fn);
  if (c.encoder_hid_dim_type == "image_proj") {
    m.encoder_hid_proj_ = ImageProjection::load(w.child("encoder_hid_proj"), c.encoder_hid_dim, c.cross_attention_dim[0]);
  }
  if (c.num_class_embeds > 0) {
    // Ref: diffusers _set_class_proj: class_embed_type None with num_class_embeds.
    m.class_embedding_ = Embedding::load(w.child("class_embedding"), c.num_class_embeds, time_embed_dim);
  }
  if (c.addition_embed_type == "text_time") {
    // Ref: diffusers _set_add_embedding: TimestepEmbedding(projection_class_embeddings_input_dim,
    // time_embed_dim) with its default SiLU, whatever act_fn says.
    m.add_embedding_ = TimestepEmbedding::load(w.child("add_embedding"), c.projection_class_embeddings_input_dim,
                                               time_embed_dim, Activation::Silu);
  } else if (c.addition_embed_type == "image") {
    m.image_add_embedding_ = ImageTimeEmbedding::load(w.child("add_embedding"), c.encoder_hid_dim, time_embed_dim);
  }

  m.down_blocks_ = load_unet_down_blocks(w, c);
  m.mid_block_ = load_unet_mid_block(w, c);

  const UNetBlockConfig base = unet_block_base(c);
  // Ref: diffusers UNet2DConditionModel.__init__, "up" section: per-block lists are reversed.
  std::vector<int64_t> rev_channels(c.block_out_channels.rbegin(), c.block_out_channels.rend());
  int64_t output_channel = rev_channels[0];
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t r = n - 1 - i;
    UNetBlockConfig b = base;
    b.prev_output_channel = output_channel;
    output_channel = rev_channels[i];
    b.out_channels = output_channel;
    b.in_channels = rev_channels[std::min(i + 1, n - 1)];
    b.num_layers = c.layers_per_block[r] + 1;
    b.transformer_layers = c.transformer_layers_per_block[r];
    b.has_attention = has_cross_attention(c.up_block_types[i]);
    b.num_attention_heads = c.num_attention_heads[r];
    if (is_simple_cross_attention(c.up_block_types[i])) {
      b.attention = BlockAttention::kAddedKV;
      // Ref: diffusers __init__, "up" section: attention_head_dim[i] is *not* reversed (only
      // num_attention_heads is), so up block i uses the head dimension of down block i.
      b.num_attention_heads = c.num_attention_heads[i];
    }
    b.resnet_sample_change = has_resnet_sampler(c.up_block_types[i]);
    b.cross_attention_dim = c.cross_attention_dim[r];
    b.only_cross_attention = c.only_cross_attention[r] != 0;
    b.add_sample_change = i + 1 < n;
    b.resolution_idx = static_cast<int64_t>(i);
    b.freeu_capable = is_one_of(c.up_block_types[i], {"CrossAttnUpBlock2D", "UpBlock2D"});
    m.up_blocks_.push_back(UpBlock2D::load(w.child("up_blocks").child(std::to_string(i)), b));
  }
  m.conv_norm_out_ = GroupNorm::load(w.child("conv_norm_out"), c.norm_num_groups, ch0, c.norm_eps);
  m.conv_out_ = Conv2d::load(w.child("conv_out"), ch0, c.out_channels, c.conv_out_kernel, 1,
                             (c.conv_out_kernel - 1) / 2);
  return m;
}

at::Tensor UNet2DConditionModel::time_embedding_for(const at::Tensor& timestep, int64_t batch,
                                                    at::ScalarType dtype) const {
  return unet_time_embedding(time_embedding_, config_, timestep, batch, dtype, device());
}

at::Tensor UNet2DConditionModel::addition_embedding_for(const UNetAddedConditions& added,
                                                        int64_t batch) const {
  return unet_text_time_embedding(*add_embedding_, config_, added, batch, dtype(), device());
}

void UNet2DConditionModel::check_inputs(const at::Tensor& sample_in, const at::Tensor& timestep,
                                        const at::Tensor& encoder_hidden_states,
                                        const UNetAddedConditions& added) const {
  if (sample_in.dim() != 4 || sample_in.size(1) != config_.in_channels) {
    throw ValueError("sample must have shape [batch, " + std::to_string(config_.in_channels) +
                     ", height, width], got " + c10::str(sample_in.sizes()));
  }
  const int64_t batch = sample_in.size(0);
  check_encoder_inputs(batch, encoder_hidden_states, added);
  if (class_embedding_) {
    const at::Tensor& labels = added.class_labels;
    if (!labels.defined()) throw ValueError("class_labels should be provided when num_class_embeds > 0");
    if (labels.dim() > 1 || (labels.numel() != batch && labels.numel() != 1) || at::isFloatingType(labels.scalar_type())) {
      throw ValueError("class_labels must be integers of shape [" + std::to_string(batch) + "], got " +
                       c10::str(labels.sizes()) + " " + c10::toString(labels.scalar_type()));
    }
    // Checked where it costs no device sync: labels from the host.
    if (labels.device().is_cpu() && labels.numel() > 0 &&
        (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= config_.num_class_embeds)) {
      throw ValueError("class_labels must lie in [0, " + std::to_string(config_.num_class_embeds) + ")");
    }
  }
  if (!timestep.defined() || timestep.dim() > 1 || (timestep.dim() == 1 && timestep.size(0) != batch && timestep.size(0) != 1)) {
    throw ValueError("timestep must be a scalar or have shape [" + std::to_string(batch) + "]");
  }
}

void UNet2DConditionModel::check_encoder_inputs(int64_t batch, const at::Tensor& encoder_hidden_states,
                                                const UNetAddedConditions& added) const {
  const bool needs_image_embeds = encoder_hid_proj_ || image_add_embedding_;
  if (needs_image_embeds) {
    if (!added.image_embeds.defined()) {
      throw ValueError(std::string("UNet2DConditionModel has the config param `") +
                       (image_add_embedding_ ? "addition_embed_type` set to 'image'" : "encoder_hid_dim_type` set to 'image_proj'") +
                       " which requires the keyword argument `image_embeds` to be passed in `added_cond_kwargs`");
    }
    if (added.image_embeds.dim() != 2 || added.image_embeds.size(0) != batch ||
        added.image_embeds.size(1) != config_.encoder_hid_dim) {
      throw ValueError("image_embeds must have shape [" + std::to_string(batch) + ", " +
                       std::to_string(config_.encoder_hid_dim) + "], got " + c10::str(added.image_embeds.sizes()));
    }
  }
  if (!encoder_hid_proj_ &&
      (!encoder_hidden_states.defined() || encoder_hidden_states.dim() != 3 || encoder_hidden_states.size(0) != batch ||
       encoder_hidden_states.size(2) != config_.cross_attention_dim[0])) {
    throw ValueError("encoder_hidden_states must have shape [" + std::to_string(batch) + ", sequence, " +
                     std::to_string(config_.cross_attention_dim[0]) + "], got " +
                     (encoder_hidden_states.defined() ? c10::str(encoder_hidden_states.sizes()) : std::string("None")));
  }
}

void UNet2DConditionModel::check_projections(const EncoderKeyValues& projected, int64_t batch) const {
  if (projected.model() != this) {
    throw ValueError("the projected encoder states were made by another UNet2DConditionModel");
  }
  const at::Tensor& storage = projected.storage();
  if (projected.batch() != batch || storage.device() != device() || storage.scalar_type() != dtype()) {
    throw ValueError("the projected encoder states have batch " + std::to_string(projected.batch()) + " on " +
                     storage.device().str() + " in " + c10::toString(storage.scalar_type()) + ", the sample batch " +
                     std::to_string(batch) + " and the model is on " + device().str() + " in " +
                     c10::toString(dtype()) + ": project them again");
  }
}

at::Tensor UNet2DConditionModel::encoder_states_for(const at::Tensor& encoder_hidden_states,
                                                    const at::Tensor& image_embeds) const {
  // Ref: diffusers process_encoder_hidden_states, "image_proj": the image tokens replace the text.
  return encoder_hid_proj_ ? encoder_hid_proj_->forward(image_embeds) : encoder_hidden_states;
}

void UNet2DConditionModel::for_each_attention(const AttentionVisitor& visit) {
  for (DownBlock2D& block : down_blocks_) block.for_each_attention(visit);
  mid_block_.for_each_attention(visit);
  for (UpBlock2D& block : up_blocks_) block.for_each_attention(visit);
}

void UNet2DConditionModel::for_each_cross_attention(const CrossAttentionVisitor& visit) const {
  // The walk is shared with the mutating visitors; this one only reads.
  const_cast<UNet2DConditionModel*>(this)->for_each_attention([&](Attention& layer) {
    if (layer.reads_encoder_states()) visit(layer);
  });
}

void UNet2DConditionModel::fuse_qkv_projections() {
  // Ref: diffusers: any added key/value processor refuses the whole model, before anything fuses.
  for_each_attention([](Attention& layer) {
    if (layer.has_added_projections()) {
      throw ValueError("`fuse_qkv_projections()` is not supported for models having added KV projections.");
    }
  });
  for_each_attention([](Attention& layer) { layer.fuse_projections(); });
  graphs_.drop();  // the graphs read the separate projections' weights
}

void UNet2DConditionModel::set_freeu(const FreeU& freeu) {
  for (UpBlock2D& block : up_blocks_) block.set_freeu(freeu);
  graphs_.drop();  // a captured graph ran with the old setting
}

void UNet2DConditionModel::unfuse_qkv_projections() {
  for_each_attention([](Attention& layer) { layer.unfuse_projections(); });
  graphs_.drop();
}

EncoderKeyValues UNet2DConditionModel::project_encoder_states(const at::Tensor& encoder_hidden_states,
                                                              const UNetAddedConditions& added) const {
  const at::Tensor& batch_source = encoder_hid_proj_ ? added.image_embeds : encoder_hidden_states;
  if (!batch_source.defined() || batch_source.dim() < 1) {
    throw ValueError(encoder_hid_proj_ ? "project_encoder_states needs image_embeds" : "project_encoder_states needs encoder_hidden_states");
  }
  check_encoder_inputs(batch_source.size(0), encoder_hidden_states, added);
  c10::NoGradGuard no_grad;
  // The same casts as forward, so that the projections equal the ones forward would make.
  const at::Tensor image_embeds = added.image_embeds.defined() ? added.image_embeds.to(device(), dtype()) : at::Tensor();
  const at::Tensor states = encoder_hid_proj_ ? at::Tensor() : encoder_hidden_states.to(device(), dtype());
  return EncoderKeyValues::project([this](const CrossAttentionVisitor& visit) { for_each_cross_attention(visit); },
                                   encoder_states_for(states, image_embeds), this);
}

void UNet2DConditionModel::check_control(const UNetControlResiduals& control, const at::Tensor& sample) const {
  // The skip connections' shapes, as the down blocks make them: conv_in's output, then each
  // layer's and each downsampler's.
  std::vector<std::vector<int64_t>> expected;
  int64_t h = sample.size(2), w = sample.size(3);
  const auto add = [&](int64_t channels) { expected.push_back({sample.size(0), channels, h, w}); };
  add(config_.block_out_channels[0]);
  for (std::size_t i = 0; i < config_.num_blocks(); ++i) {
    for (int64_t l = 0; l < config_.layers_per_block[i]; ++l) add(config_.block_out_channels[i]);
    if (i + 1 == config_.num_blocks()) break;
    if (has_resnet_sampler(config_.down_block_types[i])) {
      h /= 2, w /= 2;  // avg_pool2d(2)
    } else {
      // A 3x3 stride-2 conv; padding 0 means diffusers' (0, 1, 0, 1) pad first.
      const int64_t pad = config_.downsample_padding == 0 ? 1 : 2 * config_.downsample_padding;
      h = (h + pad - 3) / 2 + 1, w = (w + pad - 3) / 2 + 1;
    }
    add(config_.block_out_channels[i]);
  }
  if (control.down.size() != expected.size()) {
    throw ValueError("down_block_additional_residuals has " + std::to_string(control.down.size()) +
                     " tensors; this UNet makes " + std::to_string(expected.size()) + " skip connections");
  }
  // A pooled residual (a global_pool_conditions ControlNet's) is [B, C, 1, 1] and broadcasts.
  const auto fits = [](const at::Tensor& residual, std::vector<int64_t> shape) {
    if (!residual.defined()) return false;
    if (residual.sizes() == at::IntArrayRef(shape)) return true;
    shape[2] = shape[3] = 1;
    return residual.sizes() == at::IntArrayRef(shape);
  };
  for (std::size_t k = 0; k < expected.size(); ++k) {
    if (!fits(control.down[k], expected[k])) {
      throw ValueError("down_block_additional_residuals[" + std::to_string(k) + "] must have shape " +
                       c10::str(at::IntArrayRef(expected[k])) + ", got " +
                       (control.down[k].defined() ? c10::str(control.down[k].sizes()) : std::string("None")));
    }
  }
  const std::vector<int64_t> mid{sample.size(0), config_.block_out_channels.back(), h, w};
  if (!fits(control.mid, mid)) {
    throw ValueError("mid_block_additional_residual must have shape " + c10::str(at::IntArrayRef(mid)) + ", got " +
                     (control.mid.defined() ? c10::str(control.mid.sizes()) : std::string("None")));
  }
}

namespace {

// A captured graph takes its inputs as one flat list: the fixed inputs at these places, then a
// ControlNet's residuals (down..., mid), then the projections' storage (see CudaGraphCache).
enum GraphSlot : std::size_t {
  kSample, kTimestep, kEncoderStates, kTextEmbeds, kTimeIds, kImageEmbeds, kClassLabels, kFixedSlots
};

std::vector<at::Tensor> graph_inputs(const UNetInputs& in) {
  std::vector<at::Tensor> flat{in.sample, in.timestep, in.encoder_hidden_states, in.added.text_embeds,
                               in.added.time_ids, in.added.image_embeds, in.added.class_labels};
  if (in.control) {
    flat.insert(flat.end(), in.control->down.begin(), in.control->down.end());
    flat.push_back(in.control->mid);
  }
  return flat;
}

// The inverse of graph_inputs over the first `count` tensors of `flat`.
UNetInputs from_graph_inputs(const std::vector<at::Tensor>& flat, std::size_t count) {
  UNetInputs in;
  in.sample = flat[kSample];
  in.timestep = flat[kTimestep];
  in.encoder_hidden_states = flat[kEncoderStates];
  in.added = UNetAddedConditions{flat[kTextEmbeds], flat[kTimeIds], flat[kImageEmbeds], flat[kClassLabels]};
  if (count > kFixedSlots) {
    UNetControlResiduals control;
    control.down.assign(flat.begin() + kFixedSlots, flat.begin() + static_cast<std::ptrdiff_t>(count) - 1);
    control.mid = flat[count - 1];
    in.control = std::move(control);
  }
  return in;
}

}  // namespace

at::Tensor UNet2DConditionModel::forward(const at::Tensor& sample, const at::Tensor& timestep,
                                         const at::Tensor& encoder_hidden_states, const UNetAddedConditions& added,
                                         const EncoderKeyValues* projected, const UNetControlResiduals* control) const {
  UNetInputs in{sample, timestep, encoder_hidden_states, added, std::nullopt, projected};
  if (control) in.control = *control;
  return forward(in);
}

at::Tensor UNet2DConditionModel::forward(const UNetInputs& given) const {
  check_inputs(given.sample, given.timestep, given.encoder_hidden_states, given.added);
  if (given.projected) check_projections(*given.projected, given.sample.size(0));
  if (given.control) check_control(*given.control, given.sample);
  c10::NoGradGuard no_grad;
  // Everything moves to the model's device and dtype outside the graph; inside is device work only.
  const auto on_device = [&](const at::Tensor& t, bool cast) {
    if (!t.defined()) return t;
    return cast ? t.to(device(), dtype()) : t.to(device());
  };
  // timestep and the SDXL conditions keep their dtype: diffusers embeds them in float32.
  // With projections the encoder states are not read at all (their keys and values are).
  const bool reads_states = !encoder_hid_proj_ && !given.projected;
  UNetInputs in;
  in.sample = on_device(given.sample, true);
  in.timestep = on_device(given.timestep, false);
  in.encoder_hidden_states = reads_states ? on_device(given.encoder_hidden_states, true) : at::Tensor();
  in.added = UNetAddedConditions{on_device(given.added.text_embeds, false), on_device(given.added.time_ids, false),
                                 on_device(given.added.image_embeds, true),
                                 on_device(given.added.class_labels, false)};
  if (given.control) {
    UNetControlResiduals control;
    for (const at::Tensor& residual : given.control->down) control.down.push_back(on_device(residual, true));
    control.mid = on_device(given.control->mid, true);
    in.control = std::move(control);
  }
  in.projected = given.projected;
  // Streamed weights change address block by block, so a captured graph could not replay them.
  if (streaming_active()) return forward_on_device(in);
  // The projections change once per prompt: the graph's copy of them is refreshed only then.
  std::vector<CudaGraphCache::LastingInput> lasting;
  if (in.projected) lasting.push_back({in.projected->storage(), in.projected->generation()});
  const std::vector<at::Tensor> flat = graph_inputs(in);
  const std::size_t count = flat.size();
  const EncoderKeyValues* projected = in.projected;
  return graphs_.run(
      flat,
      [this, projected, count](const std::vector<at::Tensor>& captured) {
        c10::NoGradGuard no_grad_in_capture;
        UNetInputs replay = from_graph_inputs(captured, count);
        if (!projected) return forward_on_device(replay);
        const EncoderKeyValues in_place = projected->over(captured[count]);
        replay.projected = &in_place;
        return forward_on_device(replay);
      },
      lasting);
}

at::Tensor UNet2DConditionModel::forward_on_device(const UNetInputs& in) const {
  const at::Tensor& sample_in = in.sample;
  const at::Tensor& timestep = in.timestep;
  const at::Tensor& encoder_hidden_states = in.encoder_hidden_states;
  const UNetAddedConditions& added = in.added;
  const EncoderKeyValues* projected = in.projected;
  const UNetControlResiduals* control = in.control ? &*in.control : nullptr;
  const int64_t batch = sample_in.size(0);
  const bool needs_image_embeds = encoder_hid_proj_ || image_add_embedding_;
  at::Tensor sample = sample_in;
  if (config_.center_input_sample) sample = 2 * sample - 1.0;
  at::Tensor temb = time_embedding_for(timestep, batch, dtype());
  // Ref: diffusers get_class_embed, then emb + class_emb before the addition embedding.
  if (class_embedding_) temb = temb + class_embedding_->forward(added.class_labels).to(dtype());
  if (add_embedding_) temb = temb + addition_embedding_for(added, batch);
  const at::Tensor image_embeds = needs_image_embeds ? added.image_embeds : at::Tensor();
  // Ref: diffusers get_aug_embed, addition_embed_type == "image" (Kandinsky 2.2).
  if (image_add_embedding_) temb = temb + image_add_embedding_->forward(image_embeds);
  const EncoderContext context =
      projected ? EncoderContext(at::Tensor(), projected) : EncoderContext(encoder_states_for(encoder_hidden_states, image_embeds));

  at::Tensor h = conv_in_.forward(in_engine_layout(sample));
  std::vector<at::Tensor> skips{h};
  for (const DownBlock2D& block : down_blocks_) h = block.forward(h, temb, context, &skips);
  if (control) {
    // Ref: diffusers UNet2DConditionModel.forward, is_controlnet.
    for (std::size_t k = 0; k < skips.size(); ++k) skips[k] = skips[k] + control->down[k];
  }
  h = mid_block_.forward(h, temb, context);
  if (control) h = h + control->mid;
  for (std::size_t i = 0; i < up_blocks_.size(); ++i) {
    const UpBlock2D& block = up_blocks_[i];
    const bool is_final = i + 1 == up_blocks_.size();
    // The next block's skip has the size this block must upsample to; nearest x2 gives the same
    // result when sizes divide evenly and matches diffusers' forward_upsample_size when not.
    std::vector<int64_t> upsample_size;
    if (!is_final) {
      const at::Tensor& next_skip = skips[skips.size() - block.num_layers() - 1];
      upsample_size = {next_skip.size(2), next_skip.size(3)};
    }
    h = block.forward(h, temb, context, &skips, upsample_size);
  }
  h = config_.act_fn == Activation::Silu ? conv_norm_out_.forward(h, at::Tensor(), true)
                                         : apply_activation(config_.act_fn, conv_norm_out_.forward(h));
  return out_of_engine_layout(conv_out_.forward(h));
}

void UNet2DConditionModel::apply(const ParameterFn& fn) {
  visit_parameters(fn);
  graphs_.weights_visited([this](const ParameterFn& f) { visit_parameters(f); });
}

void UNet2DConditionModel::visit_parameters(const ParameterFn& fn) {
  conv_in_.apply(fn);
  time_embedding_.apply(fn);
  if (add_embedding_) add_embedding_->apply(fn);
  if (image_add_embedding_) image_add_embedding_->apply(fn);
  if (encoder_hid_proj_) encoder_hid_proj_->apply(fn);
  if (class_embedding_) class_embedding_->apply(fn);
  for (auto& b : down_blocks_) b.apply(fn);
  mid_block_.apply(fn);
  for (auto& b : up_blocks_) b.apply(fn);
  conv_norm_out_.apply(fn);
  conv_out_.apply(fn);
}

void UNet2DConditionModel::to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype) {
  apply(move_and_cast(device, dtype));
  graphs_.drop();
}

int64_t UNet2DConditionModel::num_parameters() const { return count_parameters(*this); }

void UNet2DConditionModel::for_each_unit(const UnitVisitor& visit) {
  for (DownBlock2D& block : down_blocks_) block.for_each_unit(visit);
  mid_block_.for_each_unit(visit);
  for (UpBlock2D& block : up_blocks_) block.for_each_unit(visit);
}

}  // namespace nd
