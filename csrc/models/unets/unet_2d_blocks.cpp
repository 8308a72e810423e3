#include "models/unets/unet_2d_blocks.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/errors.h"
#include "runtime/memory_format.h"

namespace nd {
namespace {

ResnetBlock2DConfig resnet_config(const UNetBlockConfig& c, int64_t in, int64_t out) {
  ResnetBlock2DConfig r;
  r.in_channels = in;
  r.out_channels = out;
  r.temb_channels = c.temb_channels;
  r.groups = c.resnet_groups;
  r.eps = c.resnet_eps;
  r.output_scale_factor = c.output_scale_factor;
  r.act = c.act;
  r.time_embedding_norm = c.resnet_time_scale_shift;
  return r;
}

Transformer2DModel load_transformer(const WeightLoader& w, const UNetBlockConfig& c, int64_t channels) {
  Transformer2DConfig t;
  t.in_channels = channels;
  t.num_attention_heads = c.num_attention_heads;
  t.attention_head_dim = channels / c.num_attention_heads;
  t.num_layers = c.transformer_layers;
  t.cross_attention_dim = c.cross_attention_dim;
  t.norm_num_groups = c.resnet_groups;
  t.use_linear_projection = c.use_linear_projection;
  t.only_cross_attention = c.only_cross_attention;
  t.upcast_attention = c.upcast_attention;
  return Transformer2DModel::load(w, t);
}

// kAddedKV or kSelf attention over `channels`.
Attention load_attention(const WeightLoader& w, const UNetBlockConfig& c, int64_t channels) {
  AttentionConfig a;
  a.query_dim = channels;
  a.qkv_bias = true;
  if (c.attention == BlockAttention::kAddedKV) {
    // Ref: diffusers SimpleCrossAttnDownBlock2D: Attention(query_dim=C, cross_attention_dim=C,
    // heads=C // attention_head_dim, dim_head=attention_head_dim, added_kv_proj_dim=cross_attention_dim,
    // norm_num_groups=resnet_groups, bias=True) with Attention's default eps 1e-5.
    const int64_t dim_head = c.num_attention_heads;
    if (dim_head <= 0 || channels % dim_head != 0) {
      throw ValueError("'" + w.prefix() + "': " + std::to_string(channels) + " channels are not divisible into heads of " +
                       "attention_head_dim=" + std::to_string(dim_head) + " (" + w.origin() + ")");
    }
    a.heads = channels / dim_head;
    a.dim_head = dim_head;
    a.added_kv_proj_dim = c.cross_attention_dim;
    a.only_cross_attention = c.only_cross_attention;
    a.norm_num_groups = c.resnet_groups;
    a.eps = 1e-5;
    return Attention::load(w, a);
  }
  // Ref: diffusers UNetMidBlock2D / AttnDownEncoderBlock2D / AttnUpDecoderBlock2D: residual
  // connection, GroupNorm (eps = resnet_eps) on the input, or SpatialNorm with "spatial" resnets.
  a.heads = c.num_attention_heads;
  a.dim_head = channels / c.num_attention_heads;
  if (c.resnet_time_scale_shift == TimeEmbeddingNorm::kSpatial) {
    a.spatial_norm_dim = c.temb_channels;
  } else {
    a.norm_num_groups = c.resnet_groups;
  }
  a.eps = c.resnet_eps;
  a.residual_connection = true;
  a.rescale_output_factor = c.output_scale_factor;
  return Attention::load(w, a);
}

ResnetBlock2D load_resnet_sampler(const WeightLoader& w, const UNetBlockConfig& c, bool up) {
  ResnetBlock2DConfig r = resnet_config(c, c.out_channels, c.out_channels);
  r.up = up;
  r.down = !up;
  return ResnetBlock2D::load(w, r);
}

}  // namespace

// ---- down ----------------------------------------------------------------------------------------

DownBlock2D DownBlock2D::load(const WeightLoader& w, const UNetBlockConfig& c) {
  DownBlock2D b;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const int64_t in = i == 0 ? c.in_channels : c.out_channels;
    b.resnets_.push_back(ResnetBlock2D::load(w.child("resnets").child(std::to_string(i)),
                                             resnet_config(c, in, c.out_channels)));
    if (c.has_attention) {
      const WeightLoader attn = w.child("attentions").child(std::to_string(i));
      if (c.attention == BlockAttention::kTransformer) {
        b.attentions_.push_back(load_transformer(attn, c, c.out_channels));
      } else {
        b.attention_layers_.push_back(load_attention(attn, c, c.out_channels));
      }
    }
  }
  if (c.add_sample_change && c.resnet_sample_change) {
    b.resnet_downsampler_ = load_resnet_sampler(w.child("downsamplers").child("0"), c, false);
  } else if (c.add_sample_change) {
    b.downsampler_ = Downsample2D::load(w.child("downsamplers").child("0"), c.out_channels,
                                        c.out_channels, c.downsample_padding);
  }
  return b;
}

at::Tensor DownBlock2D::forward(const at::Tensor& x, const at::Tensor& temb,
                                const EncoderContext& context, std::vector<at::Tensor>* skips) const {
  at::Tensor h = x;
  for (std::size_t i = 0; i < resnets_.size(); ++i) {
    h = resnets_[i].forward(h, temb);
    if (!attentions_.empty()) h = attentions_[i].forward(h, context);
    if (!attention_layers_.empty()) h = attention_layers_[i].forward(h, context, temb);
    if (skips) skips->push_back(h);
  }
  if (downsampler_ || resnet_downsampler_) {
    h = downsampler_ ? downsampler_->forward(h) : resnet_downsampler_->forward(h, temb);
    if (skips) skips->push_back(h);
  }
  return h;
}

void DownBlock2D::apply(const ParameterFn& fn) {
  for (auto& r : resnets_) r.apply(fn);
  for (auto& a : attentions_) a.apply(fn);
  for (auto& a : attention_layers_) a.apply(fn);
  if (downsampler_) downsampler_->apply(fn);
  if (resnet_downsampler_) resnet_downsampler_->apply(fn);
}

// ---- mid -----------------------------------------------------------------------------------------

MidBlock2D MidBlock2D::load(const WeightLoader& w, const UNetBlockConfig& c) {
  MidBlock2D b;
  const int64_t ch = c.in_channels;
  b.resnets_.push_back(ResnetBlock2D::load(w.child("resnets").child("0"), resnet_config(c, ch, ch)));
  if (c.has_attention) {
    const WeightLoader attn = w.child("attentions").child("0");
    if (c.attention == BlockAttention::kTransformer) {
      b.transformers_.push_back(load_transformer(attn, c, ch));
    } else {
      b.attentions_.push_back(load_attention(attn, c, ch));
    }
  }
  b.resnets_.push_back(ResnetBlock2D::load(w.child("resnets").child("1"), resnet_config(c, ch, ch)));
  return b;
}

at::Tensor MidBlock2D::forward(const at::Tensor& x, const at::Tensor& temb,
                               const EncoderContext& context) const {
  at::Tensor h = resnets_[0].forward(x, temb);
  if (!transformers_.empty()) h = transformers_[0].forward(h, context);
  if (!attentions_.empty()) h = attentions_[0].forward(h, context, temb);
  return resnets_[1].forward(h, temb);
}

void MidBlock2D::apply(const ParameterFn& fn) {
  for (auto& r : resnets_) r.apply(fn);
  for (auto& t : transformers_) t.apply(fn);
  for (auto& a : attentions_) a.apply(fn);
}

// ---- up ------------------------------------------------------------------------------------------

namespace {

// Ref: diffusers utils/torch_utils.py, fourier_filter: the centred (low-frequency) 2*threshold
// square of the shifted spectrum scaled by `scale`, computed in float32.
at::Tensor fourier_filter(const at::Tensor& x_in, int64_t threshold, double scale) {
  const at::Tensor x = x_in.to(at::kFloat);
  at::Tensor freq = at::fft_fftshift(at::fft_fftn(x, std::nullopt, at::IntArrayRef{-2, -1}), at::IntArrayRef{-2, -1});
  at::Tensor mask = at::ones(freq.sizes(), x.options());
  // mask[..., crow - t : crow + t, ccol - t : ccol + t] = scale, with Python's slice bounds.
  const auto python_slice = [&](int64_t dim, int64_t centre) {
    const int64_t size = mask.size(dim);
    const auto bound = [size](int64_t i) { return std::clamp(i < 0 ? i + size : i, int64_t{0}, size); };
    const int64_t begin = bound(centre - threshold), end = bound(centre + threshold);
    mask = mask.narrow(dim, begin, std::max<int64_t>(end - begin, 0));
  };
  const at::Tensor full_mask = mask;
  python_slice(-2, freq.size(-2) / 2);
  python_slice(-1, freq.size(-1) / 2);
  mask.fill_(scale);
  freq = freq * full_mask;
  const at::Tensor filtered =
      at::real(at::fft_ifftn(at::fft_ifftshift(freq, at::IntArrayRef{-2, -1}), std::nullopt, at::IntArrayRef{-2, -1}));
  return in_engine_layout(filtered.to(x_in.scalar_type()));
}

// Ref: diffusers utils/torch_utils.py, apply_freeu: only the first two up blocks change.
void apply_freeu(int64_t resolution_idx, const FreeU& freeu, at::Tensor& hidden, at::Tensor& skip) {
  if (resolution_idx > 1) return;
  const double b = resolution_idx == 0 ? freeu.b1 : freeu.b2;
  const double s = resolution_idx == 0 ? freeu.s1 : freeu.s2;
  hidden = hidden.clone();  // diffusers scales in place; the caller's tensor stays as it was
  hidden.narrow(1, 0, hidden.size(1) / 2).mul_(b);
  skip = fourier_filter(skip, 1, s);
}

}  // namespace

UpBlock2D UpBlock2D::load(const WeightLoader& w, const UNetBlockConfig& c) {
  UpBlock2D b;
  b.resolution_idx_ = c.resolution_idx;
  b.freeu_capable_ = c.freeu_capable;
  const bool takes_skips = c.prev_output_channel > 0;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    int64_t in = 0;
    if (takes_skips) {
      // Ref: diffusers CrossAttnUpBlock2D.__init__: the last layer's skip comes from the block
      // below's input channels; the first layer takes the previous up block's output.
      const int64_t skip = i == c.num_layers - 1 ? c.in_channels : c.out_channels;
      in = (i == 0 ? c.prev_output_channel : c.out_channels) + skip;
    } else {
      in = i == 0 ? c.in_channels : c.out_channels;
    }
    b.resnets_.push_back(ResnetBlock2D::load(w.child("resnets").child(std::to_string(i)),
                                             resnet_config(c, in, c.out_channels)));
    if (c.has_attention) {
      const WeightLoader attn = w.child("attentions").child(std::to_string(i));
      if (c.attention == BlockAttention::kTransformer) {
        b.attentions_.push_back(load_transformer(attn, c, c.out_channels));
      } else {
        b.attention_layers_.push_back(load_attention(attn, c, c.out_channels));
      }
    }
  }
  if (c.add_sample_change && c.resnet_sample_change) {
    b.resnet_upsampler_ = load_resnet_sampler(w.child("upsamplers").child("0"), c, true);
  } else if (c.add_sample_change) {
    b.upsampler_ = Upsample2D::load(w.child("upsamplers").child("0"), c.out_channels, c.out_channels);
  }
  return b;
}

at::Tensor UpBlock2D::forward(const at::Tensor& x, const at::Tensor& temb, const EncoderContext& context,
                              std::vector<at::Tensor>* skips, at::IntArrayRef upsample_size) const {
  at::Tensor h = x;
  const bool freeu = freeu_capable_ && freeu_.enabled() && skips;
  for (std::size_t i = 0; i < resnets_.size(); ++i) {
    if (skips) {
      at::Tensor skip = skips->back();
      skips->pop_back();
      if (freeu) apply_freeu(resolution_idx_, freeu_, h, skip);
      h = at::cat({h, skip}, 1);  // [B, C + C_skip, H, W]
    }
    h = resnets_[i].forward(h, temb);
    if (!attentions_.empty()) h = attentions_[i].forward(h, context);
    if (!attention_layers_.empty()) h = attention_layers_[i].forward(h, context, temb);
  }
  if (upsampler_) h = upsampler_->forward(h, upsample_size);
  // Ref: diffusers ResnetUpsampleBlock2D: the resnet upsampler always doubles (upsample_size unused).
  if (resnet_upsampler_) h = resnet_upsampler_->forward(h, temb);
  return h;
}

void UpBlock2D::apply(const ParameterFn& fn) {
  for (auto& r : resnets_) r.apply(fn);
  for (auto& a : attentions_) a.apply(fn);
  for (auto& a : attention_layers_) a.apply(fn);
  if (upsampler_) upsampler_->apply(fn);
  if (resnet_upsampler_) resnet_upsampler_->apply(fn);
}

namespace {

void visit_attention(const AttentionVisitor& visit, std::vector<Transformer2DModel>& transformers,
                     std::vector<Attention>& attention_layers) {
  for (Transformer2DModel& transformer : transformers) transformer.for_each_attention(visit);
  for (Attention& layer : attention_layers) visit(layer);
}

}  // namespace

void DownBlock2D::for_each_attention(const AttentionVisitor& visit) {
  visit_attention(visit, attentions_, attention_layers_);
}

void MidBlock2D::for_each_attention(const AttentionVisitor& visit) {
  visit_attention(visit, transformers_, attentions_);
}

void UpBlock2D::for_each_attention(const AttentionVisitor& visit) {
  visit_attention(visit, attentions_, attention_layers_);
}

namespace {

// A down or up block's units in forward order: each resnet and its attention, then the sampler.
template <typename Sampler>
void visit_block_units(const UnitVisitor& visit, std::vector<ResnetBlock2D>& resnets,
                       std::vector<Transformer2DModel>& attentions, std::vector<Attention>& attention_layers,
                       std::optional<Sampler>& sampler, std::optional<ResnetBlock2D>& resnet_sampler) {
  for (std::size_t i = 0; i < resnets.size(); ++i) {
    visit_unit(visit, resnets[i]);
    if (i < attentions.size()) attentions[i].for_each_unit(visit);
    if (i < attention_layers.size()) visit_unit(visit, attention_layers[i]);
  }
  if (sampler) visit_unit(visit, *sampler);
  if (resnet_sampler) visit_unit(visit, *resnet_sampler);
}

}  // namespace

void DownBlock2D::for_each_unit(const UnitVisitor& visit) {
  visit_block_units(visit, resnets_, attentions_, attention_layers_, downsampler_, resnet_downsampler_);
}

void MidBlock2D::for_each_unit(const UnitVisitor& visit) {
  for (ResnetBlock2D& resnet : resnets_) visit_unit(visit, resnet);
  for (Transformer2DModel& transformer : transformers_) transformer.for_each_unit(visit);
  for (Attention& attention : attentions_) visit_unit(visit, attention);
}

void UpBlock2D::for_each_unit(const UnitVisitor& visit) {
  visit_block_units(visit, resnets_, attentions_, attention_layers_, upsampler_, resnet_upsampler_);
}

}  // namespace nd
