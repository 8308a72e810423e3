#include "models/autoencoders/vae.h"

#include <ATen/ATen.h>

#include "core/random.h"

namespace nd {
namespace {

// Ref: diffusers vae.py: every VAE block uses resnet eps 1e-6 and no time embedding.
constexpr double kVaeEps = 1e-6;

UNetBlockConfig vae_block(const VaeCoderConfig& c) {
  UNetBlockConfig b;
  b.temb_channels = 0;
  b.resnet_groups = c.norm_num_groups;
  b.resnet_eps = kVaeEps;
  b.act = c.act_fn;
  return b;
}

MidBlock2D load_vae_mid_block(const WeightLoader& w, const VaeCoderConfig& c) {
  UNetBlockConfig mid = vae_block(c);
  mid.in_channels = mid.out_channels = c.block_out_channels.back();
  mid.has_attention = c.mid_block_add_attention;
  mid.num_attention_heads = 1;  // attention_head_dim = channels: a single head
  mid.cross_attention_dim = 0;
  return MidBlock2D::load(w, mid);
}

}  // namespace

Encoder Encoder::load(const WeightLoader& w, const VaeCoderConfig& c) {
  Encoder e;
  e.act_ = c.act_fn;
  const std::size_t n = c.block_out_channels.size();
  e.conv_in_ = Conv2d::load(w.child("conv_in"), c.in_channels, c.block_out_channels[0], 3, 1, 1);
  int64_t output_channel = c.block_out_channels[0];
  for (std::size_t i = 0; i < n; ++i) {
    UNetBlockConfig b = vae_block(c);
    b.in_channels = output_channel;
    output_channel = c.block_out_channels[i];
    b.out_channels = output_channel;
    b.num_layers = c.layers_per_block;
    b.add_sample_change = i + 1 < n;
    b.downsample_padding = 0;
    e.down_blocks_.push_back(DownBlock2D::load(w.child("down_blocks").child(std::to_string(i)), b));
  }
  e.mid_block_ = load_vae_mid_block(w.child("mid_block"), c);
  e.conv_norm_out_ = GroupNorm::load(w.child("conv_norm_out"), c.norm_num_groups,
                                     c.block_out_channels.back(), kVaeEps);
  e.conv_out_ = Conv2d::load(w.child("conv_out"), c.block_out_channels.back(), 2 * c.out_channels, 3, 1, 1);
  return e;
}

at::Tensor Encoder::forward(const at::Tensor& x) const {
  at::Tensor h = conv_in_.forward(x);
  for (const DownBlock2D& block : down_blocks_) h = block.forward(h, at::Tensor(), at::Tensor(), nullptr);
  h = mid_block_.forward(h, at::Tensor(), at::Tensor());
  return conv_out_.forward(apply_activation(act_, conv_norm_out_.forward(h)));
}

void Encoder::apply(const ParameterFn& fn) {
  conv_in_.apply(fn);
  for (auto& b : down_blocks_) b.apply(fn);
  mid_block_.apply(fn);
  conv_norm_out_.apply(fn);
  conv_out_.apply(fn);
}

Decoder Decoder::load(const WeightLoader& w, const VaeCoderConfig& c) {
  Decoder d;
  d.act_ = c.act_fn;
  const std::size_t n = c.block_out_channels.size();
  d.conv_in_ = Conv2d::load(w.child("conv_in"), c.in_channels, c.block_out_channels.back(), 3, 1, 1);
  d.mid_block_ = load_vae_mid_block(w.child("mid_block"), c);
  std::vector<int64_t> rev(c.block_out_channels.rbegin(), c.block_out_channels.rend());
  int64_t output_channel = rev[0];
  for (std::size_t i = 0; i < n; ++i) {
    UNetBlockConfig b = vae_block(c);
    b.in_channels = output_channel;
    output_channel = rev[i];
    b.out_channels = output_channel;
    b.prev_output_channel = 0;  // decoder blocks take no skip connections
    b.num_layers = c.layers_per_block + 1;
    b.add_sample_change = i + 1 < n;
    d.up_blocks_.push_back(UpBlock2D::load(w.child("up_blocks").child(std::to_string(i)), b));
  }
  d.conv_norm_out_ = GroupNorm::load(w.child("conv_norm_out"), c.norm_num_groups,
                                     c.block_out_channels[0], kVaeEps);
  d.conv_out_ = Conv2d::load(w.child("conv_out"), c.block_out_channels[0], c.out_channels, 3, 1, 1);
  return d;
}

at::Tensor Decoder::forward(const at::Tensor& z) const {
  at::Tensor h = conv_in_.forward(z);
  h = mid_block_.forward(h, at::Tensor(), at::Tensor());
  for (const UpBlock2D& block : up_blocks_) h = block.forward(h, at::Tensor(), at::Tensor(), nullptr, {});
  return conv_out_.forward(apply_activation(act_, conv_norm_out_.forward(h)));
}

void Decoder::apply(const ParameterFn& fn) {
  conv_in_.apply(fn);
  mid_block_.apply(fn);
  for (auto& b : up_blocks_) b.apply(fn);
  conv_norm_out_.apply(fn);
  conv_out_.apply(fn);
}

at::Tensor sample_diagonal_gaussian(const at::Tensor& parameters,
                                    const std::vector<at::Generator>& generators) {
  const std::vector<at::Tensor> parts = parameters.chunk(2, 1);
  const at::Tensor& mean = parts[0];
  const at::Tensor logvar = at::clamp(parts[1], -30.0, 20.0);
  const at::Tensor std = at::exp(0.5 * logvar);
  return mean + std * randn_tensor(mean.sizes(), generators, parameters.device(),
                                   parameters.scalar_type());
}

at::Tensor diagonal_gaussian_mode(const at::Tensor& parameters) { return parameters.chunk(2, 1)[0]; }

}  // namespace nd
