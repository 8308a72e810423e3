#include "models/controlnets/controlnet.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"
#include "runtime/memory_format.h"

namespace nd {

ControlNetConfig ControlNetConfig::from_json(const io::JsonConfig& json) {
  ControlNetConfig c;
  c.unet = UNet2DConditionConfig::from_json(json, /*with_up_blocks=*/false);
  if (!c.unet.encoder_hid_dim_type.empty()) {
    json.fail("encoder_hid_dim_type", "unsupported value \"" + c.unet.encoder_hid_dim_type + "\"");
  }
  if (c.unet.addition_embed_type == "image") json.fail("addition_embed_type", "unsupported value \"image\"");
  if (c.unet.num_class_embeds > 0) json.fail("num_class_embeds", "unsupported for a ControlNetModel");
  if (c.unet.mid_block_type != "UNetMidBlock2DCrossAttn") {
    json.fail("mid_block_type", "unsupported value \"" + c.unet.mid_block_type + "\"");
  }
  c.conditioning_channels = json.get_int("conditioning_channels", c.conditioning_channels);
  if (c.conditioning_channels <= 0) json.fail("conditioning_channels", "must be positive");
  if (json.has_value("conditioning_embedding_out_channels")) {
    c.conditioning_embedding_out_channels = json.get_int_list("conditioning_embedding_out_channels");
  }
  if (c.conditioning_embedding_out_channels.empty()) {
    json.fail("conditioning_embedding_out_channels", "expected at least one entry");
  }
  for (int64_t channels : c.conditioning_embedding_out_channels) {
    if (channels <= 0) json.fail("conditioning_embedding_out_channels", "channels must be positive");
  }
  c.global_pool_conditions = json.get_bool("global_pool_conditions", c.global_pool_conditions);
  const std::string order = json.get_string("controlnet_conditioning_channel_order", "rgb");
  if (order != "rgb" && order != "bgr") {
    json.fail("controlnet_conditioning_channel_order", "unknown value \"" + order + "\" (\"rgb\" or \"bgr\")");
  }
  c.bgr_conditioning = order == "bgr";
  return c;
}

ControlNetConditioningEmbedding ControlNetConditioningEmbedding::load(const WeightLoader& w,
                                                                      int64_t embedding_channels,
                                                                      int64_t conditioning_channels,
                                                                      const std::vector<int64_t>& channels) {
  ControlNetConditioningEmbedding e;
  e.conv_in_ = Conv2d::load(w.child("conv_in"), conditioning_channels, channels[0], 3, 1, 1);
  for (std::size_t i = 0; i + 1 < channels.size(); ++i) {
    const WeightLoader blocks = w.child("blocks");
    e.blocks_.push_back(Conv2d::load(blocks.child(std::to_string(2 * i)), channels[i], channels[i], 3, 1, 1));
    e.blocks_.push_back(Conv2d::load(blocks.child(std::to_string(2 * i + 1)), channels[i], channels[i + 1], 3, 2, 1));
  }
  e.conv_out_ = Conv2d::load(w.child("conv_out"), channels.back(), embedding_channels, 3, 1, 1);
  return e;
}

at::Tensor ControlNetConditioningEmbedding::forward(const at::Tensor& conditioning) const {
  at::Tensor embedding = at::silu(conv_in_.forward(conditioning));
  for (const Conv2d& block : blocks_) embedding = at::silu(block.forward(embedding));
  return conv_out_.forward(embedding);
}

int64_t ControlNetConditioningEmbedding::output_size(int64_t size) const {
  for (const Conv2d& block : blocks_) {
    if (block.stride == 2) size = (size + 2 - 3) / 2 + 1;
  }
  return size;
}

void ControlNetConditioningEmbedding::apply(const ParameterFn& fn) {
  conv_in_.apply(fn);
  for (Conv2d& block : blocks_) block.apply(fn);
  conv_out_.apply(fn);
}

ControlNetModel ControlNetModel::load(const ControlNetConfig& config, const io::StateDict& state_dict,
                                      const std::string& origin, std::optional<at::ScalarType> dtype) {
  const WeightLoader w(state_dict, origin, dtype);
  const UNet2DConditionConfig& c = config.unet;
  ControlNetModel m;
  m.config_ = config;
  const int64_t ch0 = c.block_out_channels[0];
  const int64_t time_embed_dim = ch0 * 4;
  m.conv_in_ = Conv2d::load(w.child("conv_in"), c.in_channels, ch0, 3, 1, 1);
  m.time_embedding_ = TimestepEmbedding::load(w.child("time_embedding"), ch0, time_embed_dim, c.act_fn);
  if (c.addition_embed_type == "text_time") {
    // Ref: diffusers ControlNetModel.__init__: TimestepEmbedding with its default SiLU, as in the UNet.
    m.add_embedding_ = TimestepEmbedding::load(w.child("add_embedding"), c.projection_class_embeddings_input_dim,
                                               time_embed_dim, Activation::Silu);
  }
  m.controlnet_cond_embedding_ = ControlNetConditioningEmbedding::load(
      w.child("controlnet_cond_embedding"), ch0, config.conditioning_channels, config.conditioning_embedding_out_channels);
  m.down_blocks_ = load_unet_down_blocks(w, c);
  m.mid_block_ = load_unet_mid_block(w, c);

  // Ref: diffusers ControlNetModel.__init__: one 1x1 convolution per skip connection the down
  // blocks make (conv_in's output, each layer's, each downsampler's), in that order.
  const WeightLoader zero_convs = w.child("controlnet_down_blocks");
  const auto add_zero_conv = [&](int64_t channels) {
    const std::string index = std::to_string(m.controlnet_down_blocks_.size());
    m.controlnet_down_blocks_.push_back(Conv2d::load(zero_convs.child(index), channels, channels, 1));
  };
  add_zero_conv(ch0);
  for (std::size_t i = 0; i < c.num_blocks(); ++i) {
    for (int64_t l = 0; l < c.layers_per_block[i]; ++l) add_zero_conv(c.block_out_channels[i]);
    if (i + 1 < c.num_blocks()) add_zero_conv(c.block_out_channels[i]);
  }
  m.controlnet_mid_block_ = Conv2d::load(w.child("controlnet_mid_block"), c.block_out_channels.back(),
                                         c.block_out_channels.back(), 1);
  return m;
}

void ControlNetModel::check_inputs(const at::Tensor& sample, const at::Tensor& timestep,
                                   const at::Tensor& encoder_hidden_states, const at::Tensor& controlnet_cond,
                                   const UNetAddedConditions& added) const {
  const UNet2DConditionConfig& c = config_.unet;
  if (!sample.defined() || sample.dim() != 4 || sample.size(1) != c.in_channels) {
    throw ValueError("sample must have shape [batch, " + std::to_string(c.in_channels) + ", height, width], got " +
                     (sample.defined() ? c10::str(sample.sizes()) : std::string("None")));
  }
  const int64_t batch = sample.size(0);
  if (!timestep.defined() || timestep.dim() > 1 ||
      (timestep.dim() == 1 && timestep.size(0) != batch && timestep.size(0) != 1)) {
    throw ValueError("timestep must be a scalar or have shape [" + std::to_string(batch) + "]");
  }
  if (!encoder_hidden_states.defined() || encoder_hidden_states.dim() != 3 ||
      encoder_hidden_states.size(0) != batch || encoder_hidden_states.size(2) != c.cross_attention_dim[0]) {
    throw ValueError("encoder_hidden_states must have shape [" + std::to_string(batch) + ", sequence, " +
                     std::to_string(c.cross_attention_dim[0]) + "], got " +
                     (encoder_hidden_states.defined() ? c10::str(encoder_hidden_states.sizes()) : std::string("None")));
  }
  if (!controlnet_cond.defined() || controlnet_cond.dim() != 4 || controlnet_cond.size(0) != batch ||
      controlnet_cond.size(1) != config_.conditioning_channels ||
      controlnet_cond_embedding_.output_size(controlnet_cond.size(2)) != sample.size(2) ||
      controlnet_cond_embedding_.output_size(controlnet_cond.size(3)) != sample.size(3)) {
    throw ValueError("controlnet_cond of shape " +
                     (controlnet_cond.defined() ? c10::str(controlnet_cond.sizes()) : std::string("None")) +
                     " does not fit a sample of shape " + c10::str(sample.sizes()) + ": expected [" +
                     std::to_string(batch) + ", " + std::to_string(config_.conditioning_channels) +
                     ", h, w] with an image that the conditioning embedding brings to the sample's height and width");
  }
  if (add_embedding_ && (!added.text_embeds.defined() || !added.time_ids.defined())) {
    throw ValueError(std::string("ControlNetModel has the config param `addition_embed_type` set to 'text_time' which "
                                 "requires the keyword argument `") +
                     (added.text_embeds.defined() ? "time_ids" : "text_embeds") +
                     "` to be passed in `added_cond_kwargs`");
  }
}

ControlNetOutput ControlNetModel::forward(const at::Tensor& sample_in, const at::Tensor& timestep,
                                          const at::Tensor& encoder_hidden_states, const at::Tensor& controlnet_cond,
                                          double conditioning_scale, bool guess_mode,
                                          const UNetAddedConditions& added) const {
  check_inputs(sample_in, timestep, encoder_hidden_states, controlnet_cond, added);
  c10::NoGradGuard no_grad;
  const UNet2DConditionConfig& c = config_.unet;
  const int64_t batch = sample_in.size(0);
  const at::Tensor sample = sample_in.to(device(), dtype());
  const EncoderContext context(encoder_hidden_states.to(device(), dtype()));
  at::Tensor cond = controlnet_cond.to(device(), dtype());
  if (config_.bgr_conditioning) cond = at::flip(cond, {1});

  // 1. time
  at::Tensor temb = unet_time_embedding(time_embedding_, c, timestep, batch, dtype(), device());
  if (add_embedding_) temb = temb + unet_text_time_embedding(*add_embedding_, c, added, batch, dtype(), device());

  // 2. pre-process: the conditioning image's embedding joins conv_in's output
  at::Tensor h = conv_in_.forward(in_engine_layout(sample));
  h = h + controlnet_cond_embedding_.forward(in_engine_layout(cond));

  // 3. down
  std::vector<at::Tensor> skips{h};
  for (const DownBlock2D& block : down_blocks_) h = block.forward(h, temb, context, &skips);

  // 4. mid
  h = mid_block_.forward(h, temb, context);

  // 5. the zero convolutions
  std::vector<at::Tensor> down;
  down.reserve(skips.size());
  for (std::size_t k = 0; k < skips.size(); ++k) down.push_back(controlnet_down_blocks_[k].forward(skips[k]));
  return scaled(std::move(down), controlnet_mid_block_.forward(h), conditioning_scale, guess_mode);
}

ControlNetOutput ControlNetModel::scaled(std::vector<at::Tensor> down, at::Tensor mid, double conditioning_scale,
                                         bool guess_mode) const {
  // Ref: diffusers ControlNetModel.forward, "6. scaling".
  if (guess_mode && !config_.global_pool_conditions) {
    // 0.1 for the shallowest residual up to 1.0 for the mid block's, in float32 as torch.logspace.
    const at::Tensor scales =
        at::logspace(-1, 0, static_cast<int64_t>(down.size()) + 1, 10.0, at::TensorOptions().device(device())) *
        conditioning_scale;
    for (std::size_t k = 0; k < down.size(); ++k) down[k] = down[k] * scales[static_cast<int64_t>(k)];
    mid = mid * scales[-1];
  } else {
    for (at::Tensor& residual : down) residual = residual * conditioning_scale;
    mid = mid * conditioning_scale;
  }
  if (config_.global_pool_conditions) {
    for (at::Tensor& residual : down) residual = at::mean(residual, {2, 3}, /*keepdim=*/true);
    mid = at::mean(mid, {2, 3}, /*keepdim=*/true);
  }
  return ControlNetOutput{std::move(down), std::move(mid)};
}

void ControlNetModel::apply(const ParameterFn& fn) {
  conv_in_.apply(fn);
  time_embedding_.apply(fn);
  if (add_embedding_) add_embedding_->apply(fn);
  controlnet_cond_embedding_.apply(fn);
  for (DownBlock2D& block : down_blocks_) block.apply(fn);
  for (Conv2d& conv : controlnet_down_blocks_) conv.apply(fn);
  mid_block_.apply(fn);
  controlnet_mid_block_.apply(fn);
}

void ControlNetModel::to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype) {
  apply(move_and_cast(device, dtype));
}

int64_t ControlNetModel::num_parameters() const { return count_parameters(*this); }

void ControlNetModel::for_each_unit(const UnitVisitor& visit) {
  for (DownBlock2D& block : down_blocks_) block.for_each_unit(visit);
  mid_block_.for_each_unit(visit);
}

}  // namespace nd
