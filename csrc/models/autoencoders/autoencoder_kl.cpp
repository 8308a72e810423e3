#include "models/autoencoders/autoencoder_kl.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <functional>
#include <vector>

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
  if (json.has_value("sample_size")) {
    const bool listed = json.json().at("sample_size").is_array();  // diffusers accepts [height, width]
    const std::vector<int64_t> sizes =
        listed ? json.get_int_list("sample_size") : std::vector<int64_t>{json.get_int("sample_size")};
    if (sizes.empty() || sizes[0] <= 0) json.fail("sample_size", "must be a positive size");
    c.sample_size = sizes[0];
  }
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

namespace {

// Ref: diffusers blend_v / blend_h: the first rows (columns) of tile `b` fade in from the last ones
// of `a`, in place.
void blend(const at::Tensor& a, const at::Tensor& b, int64_t dim, int64_t extent) {
  extent = std::min({a.size(dim), b.size(dim), extent});
  for (int64_t y = 0; y < extent; ++y) {
    const double weight = static_cast<double>(y) / static_cast<double>(extent);
    b.select(dim, y).copy_(a.select(dim, a.size(dim) - extent + y) * (1 - weight) + b.select(dim, y) * weight);
  }
}

// Ref: diffusers _tiled_encode / tiled_decode: tiles of `tile_in` input pixels every
// int(tile_in * 0.75), each coded alone to a tile of `tile_out`; each tile blends in the one above
// and the one to its left over int(tile_out * 0.25), keeps its first tile_out - that, and the kept
// parts are joined.
at::Tensor code_in_tiles(const at::Tensor& x, int64_t tile_in, int64_t tile_out,
                         const std::function<at::Tensor(const at::Tensor&)>& code) {
  constexpr double kOverlap = 0.25;
  const auto stride = static_cast<int64_t>(static_cast<double>(tile_in) * (1 - kOverlap));
  const auto extent = static_cast<int64_t>(static_cast<double>(tile_out) * kOverlap);
  const int64_t limit = tile_out - extent;
  if (stride <= 0) throw ValueError("the VAE's sample_size is too small to tile");
  std::vector<std::vector<at::Tensor>> rows;
  for (int64_t i = 0; i < x.size(2); i += stride) {
    std::vector<at::Tensor>& row = rows.emplace_back();
    for (int64_t j = 0; j < x.size(3); j += stride) {
      row.push_back(code(x.slice(2, i, i + tile_in).slice(3, j, j + tile_in)));
    }
  }
  std::vector<at::Tensor> joined_rows;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::vector<at::Tensor> kept;
    for (std::size_t j = 0; j < rows[i].size(); ++j) {
      const at::Tensor& tile = rows[i][j];
      if (i > 0) blend(rows[i - 1][j], tile, 2, extent);
      if (j > 0) blend(rows[i][j - 1], tile, 3, extent);
      kept.push_back(tile.slice(2, 0, limit).slice(3, 0, limit));
    }
    joined_rows.push_back(at::cat(kept, 3));
  }
  return at::cat(joined_rows, 2);
}

// Ref: diffusers encode/decode with slicing: batch items one at a time.
at::Tensor one_item_at_a_time(const at::Tensor& x, const std::function<at::Tensor(const at::Tensor&)>& code) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& item : x.split(1)) out.push_back(code(item));
  return at::cat(out);
}

}  // namespace

at::Tensor AutoencoderKL::encode(const at::Tensor& x) const {
  if (x.dim() != 4 || x.size(1) != config_.in_channels) {
    throw ValueError("AutoencoderKL.encode expects [batch, " + std::to_string(config_.in_channels) +
                     ", height, width], got " + c10::str(x.sizes()));
  }
  c10::NoGradGuard no_grad;
  const at::Tensor input = x.to(device(), dtype());
  if (use_slicing_ && input.size(0) > 1) {
    return one_item_at_a_time(input, [this](const at::Tensor& item) { return encode_batch(item); });
  }
  return encode_batch(input);
}

at::Tensor AutoencoderKL::decode(const at::Tensor& z) const {
  if (z.dim() != 4 || z.size(1) != config_.latent_channels) {
    throw ValueError("AutoencoderKL.decode expects [batch, " + std::to_string(config_.latent_channels) +
                     ", height, width], got " + c10::str(z.sizes()));
  }
  c10::NoGradGuard no_grad;
  const at::Tensor input = z.to(device(), dtype());
  if (use_slicing_ && input.size(0) > 1) {
    return one_item_at_a_time(input, [this](const at::Tensor& item) { return decode_batch(item); });
  }
  return decode_batch(input);
}

at::Tensor AutoencoderKL::encode_batch(const at::Tensor& x) const {
  const int64_t tile = tile_sample_min_size();
  if (use_tiling_ && (x.size(3) > tile || x.size(2) > tile)) {
    return code_in_tiles(x, tile, tile_latent_min_size(), [this](const at::Tensor& t) { return encode_tile(t); });
  }
  return encode_tile(x);
}

at::Tensor AutoencoderKL::decode_batch(const at::Tensor& z) const {
  const int64_t tile = tile_latent_min_size();
  if (use_tiling_ && (z.size(3) > tile || z.size(2) > tile)) {
    return code_in_tiles(z, tile, tile_sample_min_size(), [this](const at::Tensor& t) { return decode_tile(t); });
  }
  return decode_tile(z);
}

at::Tensor AutoencoderKL::encode_tile(const at::Tensor& x) const {
  at::Tensor h = encoder_.forward(x);
  if (quant_conv_) h = quant_conv_->forward(h);
  return h;
}

at::Tensor AutoencoderKL::decode_tile(const at::Tensor& z) const {
  const at::Tensor h = post_quant_conv_ ? post_quant_conv_->forward(z) : z;
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

void AutoencoderKL::fuse_qkv_projections() {
  encoder_.for_each_attention([](Attention& layer) { layer.fuse_projections(); });
  decoder_.for_each_attention([](Attention& layer) { layer.fuse_projections(); });
}

void AutoencoderKL::unfuse_qkv_projections() {
  encoder_.for_each_attention([](Attention& layer) { layer.unfuse_projections(); });
  decoder_.for_each_attention([](Attention& layer) { layer.unfuse_projections(); });
}

void AutoencoderKL::for_each_unit(const UnitVisitor& visit) {
  encoder_.for_each_unit(visit);
  decoder_.for_each_unit(visit);
}

}  // namespace nd
