#include "models/resnet.h"

#include <ATen/ATen.h>

#include "core/errors.h"
#include "offload/streaming.h"

namespace nd {

ResnetBlock2D ResnetBlock2D::load(const WeightLoader& w, const ResnetBlock2DConfig& c) {
  ResnetBlock2D b;
  b.config_ = c;
  const bool spatial = c.time_embedding_norm == TimeEmbeddingNorm::kSpatial;
  if (spatial) {
    b.spatial_norm1_ = SpatialNorm::load(w.child("norm1"), c.in_channels, c.temb_channels);
  } else {
    b.norm1_ = GroupNorm::load(w.child("norm1"), c.groups, c.in_channels, c.eps);
  }
  b.conv1_ = Conv2d::load(w.child("conv1"), c.in_channels, c.out_channels, 3, 1, 1);
  if (c.temb_channels > 0 && !spatial) {
    const bool scale_shift = c.time_embedding_norm == TimeEmbeddingNorm::kScaleShift;
    b.time_emb_proj_ = Linear::load(w.child("time_emb_proj"), c.temb_channels,
                                    scale_shift ? 2 * c.out_channels : c.out_channels);
  }
  if (spatial) {
    b.spatial_norm2_ = SpatialNorm::load(w.child("norm2"), c.out_channels, c.temb_channels);
  } else {
    b.norm2_ = GroupNorm::load(w.child("norm2"), c.groups, c.out_channels, c.eps);
  }
  b.conv2_ = Conv2d::load(w.child("conv2"), c.out_channels, c.out_channels, 3, 1, 1);
  if (c.in_channels != c.out_channels) {
    b.conv_shortcut_ = Conv2d::load(w.child("conv_shortcut"), c.in_channels, c.out_channels, 1);
  }
  return b;
}

at::Tensor ResnetBlock2D::forward(const at::Tensor& x_in, const at::Tensor& temb) const {
  stream_in(this);
  // Ref: diffusers resnet.py, ResnetBlock2D.forward and ResnetBlockCondNorm2D.forward.
  at::Tensor x = x_in;
  // SiLU (every config diffusers ships) fuses into the GroupNorm pass on the GPU.
  const bool silu = config_.act == Activation::Silu;
  at::Tensor h;
  if (spatial_norm1_) {
    h = apply_activation(config_.act, spatial_norm1_->forward(x, temb));
  } else {
    h = silu ? norm1_.forward(x, at::Tensor(), true) : apply_activation(config_.act, norm1_.forward(x));
  }
  if (config_.up) {
    x = upsample_nearest(x);
    h = upsample_nearest(h);
  } else if (config_.down) {
    // Ref: Downsample2D(use_conv=False): AvgPool2d(kernel_size=2, stride=2).
    x = at::avg_pool2d(x, {2, 2}, {2, 2});
    h = at::avg_pool2d(h, {2, 2}, {2, 2});
  }
  h = conv1_.forward(h);
  if (spatial_norm2_) {
    h = apply_activation(config_.act, spatial_norm2_->forward(h, temb));
  } else {
    at::Tensor t;  // [B, C] (or [B, 2C] for scale_shift)
    if (time_emb_proj_ && temb.defined()) t = time_emb_proj_->forward(apply_activation(config_.act, temb));
    if (config_.time_embedding_norm == TimeEmbeddingNorm::kScaleShift) {
      if (!t.defined()) throw ValueError(" `temb` should not be None when `time_embedding_norm` is scale_shift");
      const std::vector<at::Tensor> parts = t.unsqueeze(-1).unsqueeze(-1).chunk(2, 1);  // time_scale, time_shift
      h = apply_activation(config_.act, norm2_.forward(h) * (1 + parts[0]) + parts[1]);
    } else if (silu) {
      h = norm2_.forward(h, t, true);  // the temb add, norm2 and the activation in one pass
    } else {
      h = apply_activation(config_.act, norm2_.forward(h, t, false));
    }
  }
  h = conv2_.forward(h);
  const at::Tensor shortcut = conv_shortcut_ ? conv_shortcut_->forward(x) : x;
  at::Tensor out = shortcut + h;
  if (config_.output_scale_factor != 1.0) out = out / config_.output_scale_factor;
  return out;
}

void ResnetBlock2D::apply(const ParameterFn& fn) {
  if (spatial_norm1_) {
    spatial_norm1_->apply(fn);
  } else {
    norm1_.apply(fn);
  }
  conv1_.apply(fn);
  if (time_emb_proj_) time_emb_proj_->apply(fn);
  if (spatial_norm2_) {
    spatial_norm2_->apply(fn);
  } else {
    norm2_.apply(fn);
  }
  conv2_.apply(fn);
  if (conv_shortcut_) conv_shortcut_->apply(fn);
}

at::Tensor upsample_nearest(const at::Tensor& x, at::IntArrayRef output_size) {
  // Ref: diffusers upsampling.py: nearest upsampling has no bfloat16 kernel, so it runs in fp32.
  const bool via_float = x.scalar_type() == at::kBFloat16;
  at::Tensor h = via_float ? x.to(at::kFloat) : x;
  if (output_size.empty()) {
    h = at::upsample_nearest2d(h, {x.size(2) * 2, x.size(3) * 2});
  } else {
    h = at::upsample_nearest2d(h, output_size);
  }
  return via_float ? h.to(at::kBFloat16) : h;
}

Downsample2D Downsample2D::load(const WeightLoader& w, int64_t channels, int64_t out_channels,
                                int64_t padding) {
  Downsample2D d;
  d.conv_ = Conv2d::load(w.child("conv"), channels, out_channels, 3, 2, padding);
  d.padding_ = padding;
  return d;
}

at::Tensor Downsample2D::forward(const at::Tensor& x) const {
  stream_in(this);
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
  stream_in(this);
  return conv_.forward(upsample_nearest(x, output_size));
}

}  // namespace nd
