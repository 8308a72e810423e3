// The layout of 4-d activations and convolution weights. cuDNN's fastest half-precision
// convolutions are NHWC: given NCHW tensors it transposes around each call, so on CUDA the engine
// keeps its convolution weights and the UNet's and VAE's activations channels-last (what diffusers
// users ask for with `unet.to(memory_format=torch.channels_last)`, and what torch.compile's layout
// optimisation picks for convolution graphs). The kernels follow: GroupNorm reads NHWC directly, and
// attention's [B, C, H, W] -> [B, HW, C] becomes a view. Results leave each model contiguous (NCHW),
// as diffusers returns them.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>

namespace nd {

enum class ChannelsLastMode {
  kAuto,  // CUDA tensors only (the default)
  kOn,    // every device (the CPU tests check the layout's plumbing this way)
  kOff,
};

// Process-wide; ND_CHANNELS_LAST=0 / 1 / auto in the environment sets the starting mode.
ChannelsLastMode channels_last_mode();
void set_channels_last_mode(ChannelsLastMode mode);
// "auto", "on", "off"; anything else throws ValueError naming the value.
ChannelsLastMode parse_channels_last_mode(const std::string& text);
std::string to_string(ChannelsLastMode mode);

// Whether 4-d tensors on `device` are kept channels-last.
bool channels_last_on(c10::Device device);
// A 4-d `t` channels-last when its device keeps that layout (no copy when it already is); any
// other tensor unchanged.
at::Tensor in_engine_layout(const at::Tensor& t);
// A convolution weight in its device's layout, either way (a model moved after the mode changed
// follows it); other tensors unchanged.
at::Tensor in_parameter_layout(const at::Tensor& t);
// A model's result: contiguous (NCHW) again where the engine made it channels-last.
at::Tensor out_of_engine_layout(const at::Tensor& t);

}  // namespace nd
