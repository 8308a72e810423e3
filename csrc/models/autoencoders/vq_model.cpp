#include "models/autoencoders/vq_model.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/errors.h"

namespace nd {
namespace {

// Block types -> per-block "has attention", rejecting what the VQ autoencoder cannot build.
std::vector<bool> attention_blocks(const io::JsonConfig& json, const char* key,
                                   const std::vector<std::string>& types, const char* plain, const char* with_attention) {
  std::vector<bool> out;
  for (std::size_t i = 0; i < types.size(); ++i) {
    if (types[i] != plain && types[i] != with_attention) {
      json.fail(std::string(key) + "[" + std::to_string(i) + "]", "unsupported value \"" + types[i] + "\"");
    }
    out.push_back(types[i] == with_attention);
  }
  return out;
}

}  // namespace

VQModelConfig VQModelConfig::from_json(const io::JsonConfig& json) {
  VQModelConfig c;
  c.in_channels = json.get_int("in_channels", c.in_channels);
  c.out_channels = json.get_int("out_channels", c.out_channels);
  if (json.has_value("down_block_types")) c.down_block_types = json.get_string_list("down_block_types");
  if (json.has_value("up_block_types")) c.up_block_types = json.get_string_list("up_block_types");
  if (json.has_value("block_out_channels")) c.block_out_channels = json.get_int_list("block_out_channels");
  const std::size_t n = c.block_out_channels.size();
  if (n == 0 || n > 8) json.fail("block_out_channels", "expected 1 to 8 blocks");
  if (c.down_block_types.size() != n) json.fail("down_block_types", "must have one entry per block_out_channels");
  if (c.up_block_types.size() != n) json.fail("up_block_types", "must have one entry per block_out_channels");
  attention_blocks(json, "down_block_types", c.down_block_types, "DownEncoderBlock2D", "AttnDownEncoderBlock2D");
  attention_blocks(json, "up_block_types", c.up_block_types, "UpDecoderBlock2D", "AttnUpDecoderBlock2D");
  c.layers_per_block = json.get_int("layers_per_block", c.layers_per_block);
  c.act_fn = parse_activation(json.get_string("act_fn", "silu"), "act_fn", json.origin());
  c.latent_channels = json.get_int("latent_channels", c.latent_channels);
  c.num_vq_embeddings = json.get_int("num_vq_embeddings", c.num_vq_embeddings);
  c.norm_num_groups = json.get_int("norm_num_groups", c.norm_num_groups);
  c.vq_embed_dim = json.has_value("vq_embed_dim") ? json.get_int("vq_embed_dim") : c.latent_channels;
  c.scaling_factor = json.get_double("scaling_factor", c.scaling_factor);
  const std::string norm_type = json.get_string("norm_type", "group");
  if (norm_type != "group" && norm_type != "spatial") json.fail("norm_type", "unsupported value \"" + norm_type + "\"");
  c.spatial_norm = norm_type == "spatial";
  c.mid_block_add_attention = json.get_bool("mid_block_add_attention", c.mid_block_add_attention);
  c.force_upcast = json.get_bool("force_upcast", c.force_upcast);
  if (json.get_bool("lookup_from_codebook", false)) json.fail("lookup_from_codebook", "unsupported value true");
  for (int64_t ch : c.block_out_channels) {
    if (ch <= 0) json.fail("block_out_channels", "channels must be positive");
  }
  if (c.layers_per_block <= 0) json.fail("layers_per_block", "must be positive");
  if (c.latent_channels <= 0) json.fail("latent_channels", "must be positive");
  if (c.num_vq_embeddings <= 0) json.fail("num_vq_embeddings", "must be positive");
  if (c.vq_embed_dim <= 0) json.fail("vq_embed_dim", "must be positive");
  // The spatial norms read the quantized latents (vq_embed_dim channels) through convs built for
  // latent_channels; diffusers fails at run time when they differ.
  if (c.spatial_norm && c.vq_embed_dim != c.latent_channels) {
    json.fail("vq_embed_dim", "must equal latent_channels with norm_type \"spatial\"");
  }
  return c;
}

VQModel VQModel::load(const VQModelConfig& c, const io::StateDict& state_dict, const std::string& origin,
                      std::optional<at::ScalarType> dtype) {
  const WeightLoader w(state_dict, origin, dtype);
  VQModel m;
  m.config_ = c;
  // Ref: diffusers VQModel.__init__: Encoder(out_channels=latent_channels, double_z=False).
  VaeCoderConfig coder = VaeCoderConfig::encoder_of(c);
  coder.double_z = false;
  for (const std::string& t : c.down_block_types) coder.attention_blocks.push_back(t == "AttnDownEncoderBlock2D");
  m.encoder_ = Encoder::load(w.child("encoder"), coder);
  coder.in_channels = c.latent_channels;
  coder.out_channels = c.out_channels;
  coder.spatial_norm = c.spatial_norm;
  coder.attention_blocks.clear();
  for (const std::string& t : c.up_block_types) coder.attention_blocks.push_back(t == "AttnUpDecoderBlock2D");
  m.decoder_ = Decoder::load(w.child("decoder"), coder);
  m.quant_conv_ = Conv2d::load(w.child("quant_conv"), c.latent_channels, c.vq_embed_dim, 1);
  // Ref: VectorQuantizer(num_vq_embeddings, vq_embed_dim, beta=0.25, remap=None).
  m.quantize_ = VectorQuantizer::load(w.child("quantize"), c.num_vq_embeddings, c.vq_embed_dim, 0.25);
  m.post_quant_conv_ = Conv2d::load(w.child("post_quant_conv"), c.vq_embed_dim, c.latent_channels, 1);
  return m;
}

at::Tensor VQModel::encode(const at::Tensor& x) const {
  if (!x.defined() || x.dim() != 4 || x.size(1) != config_.in_channels) {
    throw ValueError("VQModel.encode expects [batch, " + std::to_string(config_.in_channels) +
                     ", height, width], got " + (x.defined() ? c10::str(x.sizes()) : std::string("None")));
  }
  c10::NoGradGuard no_grad;
  return quant_conv_.forward(encoder_.forward(x.to(device(), dtype())));
}

std::pair<at::Tensor, at::Tensor> VQModel::decode(const at::Tensor& h_in, bool force_not_quantize) const {
  if (!h_in.defined() || h_in.dim() != 4 || h_in.size(1) != config_.vq_embed_dim) {
    throw ValueError("VQModel.decode expects [batch, " + std::to_string(config_.vq_embed_dim) +
                     ", height, width], got " + (h_in.defined() ? c10::str(h_in.sizes()) : std::string("None")));
  }
  c10::NoGradGuard no_grad;
  const at::Tensor h = h_in.to(device(), dtype());
  at::Tensor quant, commit_loss;
  if (force_not_quantize) {
    quant = h;
    commit_loss = at::zeros({h.size(0)}, h.options());
  } else {
    std::tie(quant, commit_loss) = quantize_.forward(h);
  }
  const at::Tensor quant2 = post_quant_conv_.forward(quant);
  const at::Tensor decoded = decoder_.forward(quant2, config_.spatial_norm ? quant : at::Tensor());
  return {decoded, commit_loss};
}

void VQModel::apply(const ParameterFn& fn) {
  encoder_.apply(fn);
  quant_conv_.apply(fn);
  quantize_.apply(fn);
  post_quant_conv_.apply(fn);
  decoder_.apply(fn);
}

void VQModel::to(std::optional<c10::Device> device, std::optional<at::ScalarType> dtype) {
  apply(move_and_cast(device, dtype));
}

int64_t VQModel::num_parameters() const { return count_parameters(*this); }

}  // namespace nd
