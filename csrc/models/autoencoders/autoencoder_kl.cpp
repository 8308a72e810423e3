#include "models/autoencoders/autoencoder_kl.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"

namespace nd {

AutoencoderKLConfig AutoencoderKLConfig::from_json(const io::JsonConfig& json) {
  AutoencoderKLConfig c;
  c.in_channels = json.get_int("in_channels", c.in_channels);
  c.out_channels = json.get_int("out_channels", c.out_channels);
  if (json.has_value("block_out_channels")) c.block_out_channels = json.get_int_list("block_out_channels");
  const std::size_t n = c.block_out_channels.size();
  if (n == 0 || n > 8) json.fail("block_out_channels", "expected 1 to 8 blocks");
  if (json.has_value("down_block_types")) {
    const auto types = json.get_string_list("down_block_types");
    if (types.size() != n) json.fail("down_block_types", "must have one entry per block_out_channels");
    for (std::size_t i = 0; i < n; ++i) {
      if (types[i] != "DownEncoderBlock2D") {
        json.fail("down_block_types[" + std::to_string(i) + "]", "unsupported value \"" + types[i] + "\"");
      }
    }
  }
  if (json.has_value("up_block_types")) {
    const auto types = json.get_string_list("up_block_types");
    if (types.size() != n) json.fail("up_block_types", "must have one entry per block_out_channels");
    for (std::size_t i = 0; i < n; ++i) {
      if (types[i] != "UpDecoderBlock2D") {
        json.fail("up_block_types[" + std::to_string(i) + "]", "unsupported value \"" + types[i] + "\"");
      }
    }
  }
  c.layers_per_block = json.get_int("layers_per_block", c.layers_per_block);
  c.act_fn = parse_activation(json.get_string("act_fn", "silu"), "act_fn", json.origin());
  c.latent_channels = json.get_int("latent_channels", c.latent_channels);
  c.norm_num_groups = json.get_int("norm_num_groups", c.norm_num_groups);
  c.scaling_factor = json.get_double("scaling_factor", c.scaling_factor);
  if (json.has_value("shift_factor")) c.shift_factor = json.get_double("shift_factor");
  c.force_upcast = json.get_bool("force_upcast", c.force_upcast);
  c.use_quant_conv = json.get_bool("use_quant_conv", c.use_quant_conv);
  c.use_post_quant_conv = json.get_bool("use_post_quant_conv", c.use_post_quant_conv);
  c.mid_block_add_attention = json.get_bool("mid_block_add_attention", c.mid_block_add_attention);
  // Per-channel latent normalisation (some later VAEs); silently ignoring it would skew every image.
  for (const char* key : {"latents_mean", "latents_std"}) {
    if (json.has_value(key)) json.fail(key, "per-channel latent normalisation is not supported yet");
  }
  for (int64_t ch : c.block_out_channels) {
    if (ch <= 0) json.fail("block_out_channels", "channels must be positive");
  }
  if (c.layers_per_block <= 0) json.fail("layers_per_block", "must be positive");
  if (c.latent_channels <= 0) json.fail("latent_channels", "must be positive");
  return c;
}

AutoencoderKL AutoencoderKL::load(const AutoencoderKLConfig& c, const io::StateDict& state_dict,
                                  const std::string& origin, std::optional<at::ScalarType> dtype) {
  const WeightLoader w(state_dict, origin, dtype);
  AutoencoderKL m;
  m.config_ = c;
  VaeCoderConfig coder = VaeCoderConfig::encoder_of(c);
  m.encoder_ = Encoder::load(w.child("encoder"), coder);
  coder.in_channels = c.latent_channels;
  coder.out_channels = c.out_channels;
  m.decoder_ = Decoder::load(w.child("decoder"), coder);
  const int64_t lc = c.latent_channels;
  if (c.use_quant_conv) m.quant_conv_ = Conv2d::load(w.child("quant_conv"), 2 * lc, 2 * lc, 1);
  if (c.use_post_quant_conv) m.post_quant_conv_ = Conv2d::load(w.child("post_quant_conv"), lc, lc, 1);
  m.probe_ = m.decoder_probe();
  return m;
}

at::Tensor AutoencoderKL::encode(const at::Tensor& x) const {
  if (x.dim() != 4 || x.size(1) != config_.in_channels) {
    throw ValueError("AutoencoderKL.encode expects [batch, " + std::to_string(config_.in_channels) +
                     ", height, width], got " + c10::str(x.sizes()));
  }
  c10::NoGradGuard no_grad;
  at::Tensor h = encoder_.forward(x.to(device(), dtype()));
  if (quant_conv_) h = quant_conv_->forward(h);
  return h;
}

at::Tensor AutoencoderKL::decode(const at::Tensor& z) const {
  if (z.dim() != 4 || z.size(1) != config_.latent_channels) {
    throw ValueError("AutoencoderKL.decode expects [batch, " + std::to_string(config_.latent_channels) +
                     ", height, width], got " + c10::str(z.sizes()));
  }
  c10::NoGradGuard no_grad;
  at::Tensor h = z.to(device(), dtype());
  if (post_quant_conv_) h = post_quant_conv_->forward(h);
  return decoder_.forward(h);
}

void AutoencoderKL::apply(const ParameterFn& fn) {
  encoder_.apply(fn);
  decoder_.apply(fn);
  if (quant_conv_) quant_conv_->apply(fn);
  if (post_quant_conv_) post_quant_conv_->apply(fn);
}

at::Tensor AutoencoderKL::decoder_probe() {
  at::Tensor first;
  decoder_.apply([&](const at::Tensor& t) {
    if (!first.defined()) first = t;
    return t;
  });
  return first;
}

at::ScalarType AutoencoderKL::dtype() const { return probe_.scalar_type(); }
c10::Device AutoencoderKL::device() const { return probe_.device(); }

void AutoencoderKL::to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype) {
  apply(move_and_cast(device, dtype));
  probe_ = decoder_probe();
}

int64_t AutoencoderKL::num_parameters() const { return count_parameters(*this); }

void AutoencoderKL::for_each_unit(const UnitVisitor& visit) {
  encoder_.for_each_unit(visit);
  decoder_.for_each_unit(visit);
}

}  // namespace nd
