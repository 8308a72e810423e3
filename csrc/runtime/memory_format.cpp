#include "runtime/memory_format.h"

#include <atomic>
#include <cstdlib>

#include "core/errors.h"

namespace nd {
namespace {

ChannelsLastMode mode_from_environment() {
  const char* value = std::getenv("ND_CHANNELS_LAST");
  if (value == nullptr || *value == '\0') return ChannelsLastMode::kAuto;
  const std::string text(value);
  if (text == "0") return ChannelsLastMode::kOff;
  if (text == "1") return ChannelsLastMode::kOn;
  try {
    return parse_channels_last_mode(text);
  } catch (const ValueError&) {
    return ChannelsLastMode::kAuto;  // an unreadable setting must not stop the import
  }
}

std::atomic<ChannelsLastMode>& current_mode() {
  static std::atomic<ChannelsLastMode> mode{mode_from_environment()};
  return mode;
}

}  // namespace

ChannelsLastMode channels_last_mode() { return current_mode().load(); }
void set_channels_last_mode(ChannelsLastMode mode) { current_mode().store(mode); }

ChannelsLastMode parse_channels_last_mode(const std::string& text) {
  if (text == "auto") return ChannelsLastMode::kAuto;
  if (text == "on") return ChannelsLastMode::kOn;
  if (text == "off") return ChannelsLastMode::kOff;
  throw ValueError("channels-last mode must be 'auto', 'on' or 'off', got '" + text + "'");
}

std::string to_string(ChannelsLastMode mode) {
  switch (mode) {
    case ChannelsLastMode::kAuto: return "auto";
    case ChannelsLastMode::kOn: return "on";
    case ChannelsLastMode::kOff: return "off";
  }
  return "auto";
}

bool channels_last_on(c10::Device device) {
  switch (channels_last_mode()) {
    case ChannelsLastMode::kAuto: return device.is_cuda();
    case ChannelsLastMode::kOn: return true;
    case ChannelsLastMode::kOff: return false;
  }
  return false;
}

at::Tensor in_engine_layout(const at::Tensor& t) {
  // Otherwise left as given: diffusers' convolutions see the strides the caller's tensor has (an
  // image from an HWC array arrives channels-last-strided), and so must ours to match them exactly.
  if (!t.defined() || t.dim() != 4 || !channels_last_on(t.device())) return t;
  return t.contiguous(at::MemoryFormat::ChannelsLast);
}

at::Tensor in_parameter_layout(const at::Tensor& t) {
  if (!t.defined() || t.dim() != 4) return t;
  return t.contiguous(channels_last_on(t.device()) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
}

at::Tensor out_of_engine_layout(const at::Tensor& t) {
  if (!t.defined() || t.dim() != 4 || !channels_last_on(t.device())) return t;
  return t.contiguous();
}

}  // namespace nd
