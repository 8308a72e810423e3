#include "runtime/memory_format.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "runtime/named_modes.h"

namespace nd {
namespace {

const NamedModes<ChannelsLastMode>& mode_names() {
  static const NamedModes<ChannelsLastMode> names{
      "channels-last mode",
      {{"auto", ChannelsLastMode::kAuto}, {"on", ChannelsLastMode::kOn}, {"off", ChannelsLastMode::kOff}}};
  return names;
}

ChannelsLastMode mode_from_environment() {
  // ND_CHANNELS_LAST also takes 0 and 1, as the other ND_* switches do.
  const char* value = std::getenv("ND_CHANNELS_LAST");
  if (value != nullptr && std::string(value) == "0") return ChannelsLastMode::kOff;
  if (value != nullptr && std::string(value) == "1") return ChannelsLastMode::kOn;
  return mode_names().from_environment("ND_CHANNELS_LAST");
}

std::atomic<ChannelsLastMode>& current_mode() {
  static std::atomic<ChannelsLastMode> mode{mode_from_environment()};
  return mode;
}

}  // namespace

ChannelsLastMode channels_last_mode() { return current_mode().load(); }
void set_channels_last_mode(ChannelsLastMode mode) { current_mode().store(mode); }

ChannelsLastMode parse_channels_last_mode(const std::string& text) { return mode_names().parse(text); }
std::string to_string(ChannelsLastMode mode) { return mode_names().name(mode); }

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
