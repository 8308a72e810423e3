#include "models/resnet.h"

#include <ATen/ATen.h>

namespace nd {

ResnetBlock2D ResnetBlock2D::load(const WeightLoader& w, const ResnetBlock2DConfig& c) {
  ResnetBlock2D b;
  b.config_ = c;
  b.norm1_ = GroupNorm::load(w.child("norm1"), c.groups, c.in_channels, c.eps);
  b.conv1_ = Conv2d::load(w.child("conv1"), c.in_channels, c.out_channels, 3, 1, 1);
  if (c.temb_channels > 0) {
    b.time_emb_proj_ = Linear::load(w.child("time_emb_proj"), c.temb_channels, c.out_channels);
  }
  b.norm2_ = GroupNorm::load(w.child("norm2"), c.groups, c.out_channels, c.eps);
  b.conv2_ = Conv2d::load(w.child("conv2"), c.out_channels, c.out_channels, 3, 1, 1);
  if (c.in_channels != c.out_channels) {
    b.conv_shortcut_ = Conv2d::load(w.child("conv_shortcut"), c.in_channels, c.out_channels, 1);
  }
  return b;
}

at::Tensor ResnetBlock2D::forward(const at::Tensor& x, const at::Tensor& temb) const {
  // Ref: diffusers resnet.py, ResnetBlock2D.forward (time_embedding_norm="default").
  at::Tensor h = conv1_.forward(apply_activation(config_.act, norm1_.forward(x)));
  if (time_emb_proj_ && temb.defined()) {
    h = h + time_emb_proj_->forward(apply_activation(config_.act, temb)).unsqueeze(-1).unsqueeze(-1);
  }
  h = conv2_.forward(apply_activation(config_.act, norm2_.forward(h)));
  const at::Tensor shortcut = conv_shortcut_ ? conv_shortcut_->forward(x) : x;
  at::Tensor out = shortcut + h;
  if (config_.output_scale_factor != 1.0) out = out / config_.output_scale_factor;
  return out;
}

void ResnetBlock2D::apply(const ParameterFn& fn) {
  norm1_.apply(fn);
  conv1_.apply(fn);
  if (time_emb_proj_) time_emb_proj_->apply(fn);
  norm2_.apply(fn);
  conv2_.apply(fn);
  if (conv_shortcut_) conv_shortcut_->apply(fn);
}

Downsample2D Downsample2D::load(const WeightLoader& w, int64_t channels, int64_t out_channels,
                                int64_t padding) {
  Downsample2D d;
  d.conv_ = Conv2d::load(w.child("conv"), channels, out_channels, 3, 2, padding);
  d.padding_ = padding;
  return d;
}

at::Tensor Downsample2D::forward(const at::Tensor& x) const {
  // Ref: diffusers downsampling.py: with padding 0 the input is padded (0, 1, 0, 1) first.
  if (padding_ == 0) return conv_.forward(at::constant_pad_nd(x, {0, 1, 0, 1}, 0));
  return conv_.forward(x);
}

Upsample2D Upsample2D::load(const WeightLoader& w, int64_t channels, int64_t out_channels) {
  Upsample2D u;
  u.conv_ = Conv2d::load(w.child("conv"), channels, out_channels, 3, 1, 1);
  return u;
}

at::Tensor Upsample2D::forward(const at::Tensor& x, at::IntArrayRef output_size) const {
  // Ref: diffusers upsampling.py: nearest upsampling has no bfloat16 kernel, so it runs in fp32.
  const bool via_float = x.scalar_type() == at::kBFloat16;
  at::Tensor h = via_float ? x.to(at::kFloat) : x;
  if (output_size.empty()) {
    h = at::upsample_nearest2d(h, {x.size(2) * 2, x.size(3) * 2});
  } else {
    h = at::upsample_nearest2d(h, output_size);
  }
  if (via_float) h = h.to(at::kBFloat16);
  return conv_.forward(h);
}

}  // namespace nd
