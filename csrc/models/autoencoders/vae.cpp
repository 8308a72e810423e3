#include "models/autoencoders/vae.h"

#include <ATen/ATen.h>

#include "core/errors.h"
#include "runtime/memory_format.h"
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

bool has_attention_block(const VaeCoderConfig& c, std::size_t i) {
  return i < c.attention_blocks.size() && c.attention_blocks[i];
}

// Ref: diffusers Decoder.__init__ with norm_type "spatial": every resnet is a
// ResnetBlockCondNorm2D and every attention takes a SpatialNorm, conditioned on the latents
// (temb_channels = in_channels).
UNetBlockConfig decoder_block(const VaeCoderConfig& c) {
  UNetBlockConfig b = vae_block(c);
  if (c.spatial_norm) {
    b.temb_channels = c.in_channels;
    b.resnet_time_scale_shift = TimeEmbeddingNorm::kSpatial;
  }
  return b;
}

MidBlock2D load_vae_mid_block(const WeightLoader& w, const VaeCoderConfig& c, UNetBlockConfig mid) {
  mid.in_channels = mid.out_channels = c.block_out_channels.back();
  mid.has_attention = c.mid_block_add_attention;
  mid.attention = BlockAttention::kSelf;
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
    b.has_attention = has_attention_block(c, i);
    b.attention = BlockAttention::kSelf;
    b.num_attention_heads = 1;  // Ref: get_down_block(attention_head_dim=output_channel): one head
    e.down_blocks_.push_back(DownBlock2D::load(w.child("down_blocks").child(std::to_string(i)), b));
  }
  e.mid_block_ = load_vae_mid_block(w.child("mid_block"), c, vae_block(c));
  e.conv_norm_out_ = GroupNorm::load(w.child("conv_norm_out"), c.norm_num_groups,
                                     c.block_out_channels.back(), kVaeEps);
  e.conv_out_ = Conv2d::load(w.child("conv_out"), c.block_out_channels.back(),
                             c.double_z ? 2 * c.out_channels : c.out_channels, 3, 1, 1);
  return e;
}

at::Tensor Encoder::forward(const at::Tensor& x) const {
  at::Tensor h = conv_in_.forward(in_engine_layout(x));
  for (const DownBlock2D& block : down_blocks_) h = block.forward(h, at::Tensor(), at::Tensor(), nullptr);
  h = mid_block_.forward(h, at::Tensor(), at::Tensor());
  h = act_ == Activation::Silu ? conv_norm_out_.forward(h, at::Tensor(), true)
                               : apply_activation(act_, conv_norm_out_.forward(h));
  return out_of_engine_layout(conv_out_.forward(h));
}

void Encoder::apply(const ParameterFn& fn) {
  conv_in_.apply(fn);
  for (auto& b : down_blocks_) b.apply(fn);
  mid_block_.apply(fn);
  conv_norm_out_.apply(fn);
  conv_out_.apply(fn);
}

void Encoder::for_each_attention(const AttentionVisitor& visit) {
  for (auto& b : down_blocks_) b.for_each_attention(visit);
  mid_block_.for_each_attention(visit);
}

Decoder Decoder::load(const WeightLoader& w, const VaeCoderConfig& c) {
  Decoder d;
  d.act_ = c.act_fn;
  const std::size_t n = c.block_out_channels.size();
  d.conv_in_ = Conv2d::load(w.child("conv_in"), c.in_channels, c.block_out_channels.back(), 3, 1, 1);
  d.mid_block_ = load_vae_mid_block(w.child("mid_block"), c, decoder_block(c));
  std::vector<int64_t> rev(c.block_out_channels.rbegin(), c.block_out_channels.rend());
  int64_t output_channel = rev[0];
  for (std::size_t i = 0; i < n; ++i) {
    UNetBlockConfig b = decoder_block(c);
    b.in_channels = output_channel;
    output_channel = rev[i];
    b.out_channels = output_channel;
    b.prev_output_channel = 0;  // decoder blocks take no skip connections
    b.num_layers = c.layers_per_block + 1;
    b.add_sample_change = i + 1 < n;
    b.has_attention = has_attention_block(c, i);
    b.attention = BlockAttention::kSelf;
    b.num_attention_heads = 1;
    d.up_blocks_.push_back(UpBlock2D::load(w.child("up_blocks").child(std::to_string(i)), b));
  }
  if (c.spatial_norm) {
    d.spatial_norm_out_ = SpatialNorm::load(w.child("conv_norm_out"), c.block_out_channels[0], c.in_channels);
  } else {
    d.conv_norm_out_ = GroupNorm::load(w.child("conv_norm_out"), c.norm_num_groups, c.block_out_channels[0], kVaeEps);
  }
  d.conv_out_ = Conv2d::load(w.child("conv_out"), c.block_out_channels[0], c.out_channels, 3, 1, 1);
  return d;
}

at::Tensor Decoder::forward(const at::Tensor& z, const at::Tensor& zq_in) const {
  const at::Tensor zq = in_engine_layout(zq_in);
  if (spatial_norm_out_ && !zq.defined()) throw ValueError("a spatial-norm decoder needs the quantized latents");
  // Ref: diffusers Decoder.forward: the latents condition every block as `temb`.
  const at::Tensor temb = spatial_norm_out_ ? zq : at::Tensor();
  at::Tensor h = conv_in_.forward(in_engine_layout(z));
  h = mid_block_.forward(h, temb, at::Tensor());
  for (const UpBlock2D& block : up_blocks_) h = block.forward(h, temb, at::Tensor(), nullptr, {});
  if (spatial_norm_out_) {
    h = apply_activation(act_, spatial_norm_out_->forward(h, zq));
  } else {
    h = act_ == Activation::Silu ? conv_norm_out_.forward(h, at::Tensor(), true)
                                 : apply_activation(act_, conv_norm_out_.forward(h));
  }
  return out_of_engine_layout(conv_out_.forward(h));
}

void Decoder::for_each_attention(const AttentionVisitor& visit) {
  mid_block_.for_each_attention(visit);
  for (auto& b : up_blocks_) b.for_each_attention(visit);
}

void Decoder::apply(const ParameterFn& fn) {
  conv_in_.apply(fn);
  mid_block_.apply(fn);
  for (auto& b : up_blocks_) b.apply(fn);
  if (spatial_norm_out_) {
    spatial_norm_out_->apply(fn);
  } else {
    conv_norm_out_.apply(fn);
  }
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

VectorQuantizer VectorQuantizer::load(const WeightLoader& w, int64_t n_e, int64_t vq_embed_dim, double beta) {
  VectorQuantizer q;
  q.embedding_ = Embedding::load(w.child("embedding"), n_e, vq_embed_dim);
  q.beta_ = beta;
  return q;
}

std::pair<at::Tensor, at::Tensor> VectorQuantizer::forward(const at::Tensor& z_in) const {
  const int64_t dim = embedding_.weight.size(1);
  const at::Tensor z = z_in.permute({0, 2, 3, 1}).contiguous();  // [B, h, w, D]
  const at::Tensor z_flattened = z.view({-1, dim});             // [B*h*w, D]
  const at::Tensor indices = at::argmin(at::cdist(z_flattened, embedding_.weight), 1);
  at::Tensor z_q = embedding_.forward(indices).view(z.sizes());
  // Legacy loss: mean((z_q - z)^2) + beta * mean((z_q - z)^2), the terms as diffusers computes them.
  const at::Tensor sq = at::mean(at::pow(z_q - z, 2));
  const at::Tensor loss = sq + beta_ * sq;
  // Ref: the straight-through estimator z + (z_q - z).detach(), kept for bit-parity.
  z_q = z + (z_q - z);
  return {z_q.permute({0, 3, 1, 2}).contiguous(), loss};
}

void Encoder::for_each_unit(const UnitVisitor& visit) {
  for (DownBlock2D& block : down_blocks_) block.for_each_unit(visit);
  mid_block_.for_each_unit(visit);
}

void Decoder::for_each_unit(const UnitVisitor& visit) {
  mid_block_.for_each_unit(visit);
  for (UpBlock2D& block : up_blocks_) block.for_each_unit(visit);
}

}  // namespace nd
