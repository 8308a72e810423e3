#include "models/encoder_key_values.h"

#include <ATen/ATen.h>

#include <atomic>
#include <utility>

#include "core/errors.h"
#include "models/attention_processor.h"

namespace nd {
namespace {

// Each key and value starts a multiple of 128 bytes (64 elements of 2 bytes or more) past the
// storage's start, which CUDA allocates 512-byte aligned: as aligned as the kernels' vector loads need.
constexpr int64_t kAlignElements = 64;

int64_t aligned(int64_t elements) { return (elements + kAlignElements - 1) / kAlignElements * kAlignElements; }

uint64_t next_generation() {
  static std::atomic<uint64_t> counter{0};
  return ++counter;
}

}  // namespace

EncoderKeyValues EncoderKeyValues::project(const std::function<void(const CrossAttentionVisitor&)>& for_each_layer,
                                           const at::Tensor& states, const void* model) {
  EncoderKeyValues kv;
  kv.model_ = model;
  kv.batch_ = states.size(0);
  kv.generation_ = next_generation();
  std::vector<at::Tensor> projected;
  int64_t total = 0;
  for_each_layer([&](const Attention& layer) {
    auto [key, value] = layer.project_encoder_states(states);
    Slot slot;
    slot.sizes = key.sizes().vec();
    slot.key_offset = total;
    total += aligned(key.numel());
    slot.value_offset = total;
    total += aligned(value.numel());
    kv.index_.emplace(&layer, kv.slots_.size());
    kv.slots_.push_back(std::move(slot));
    projected.push_back(std::move(key));
    projected.push_back(std::move(value));
  });
  kv.storage_ = at::empty({total}, states.options());
  kv.bind_views();
  for (std::size_t i = 0; i < kv.views_.size(); ++i) {
    kv.views_[i].key.copy_(projected[2 * i]);
    kv.views_[i].value.copy_(projected[2 * i + 1]);
  }
  return kv;
}

EncoderKeyValues EncoderKeyValues::over(const at::Tensor& storage) const {
  if (!storage.defined() || storage.dim() != 1 || storage.numel() != storage_.numel()) {
    throw ValueError("projected encoder keys and values: storage of another size");
  }
  EncoderKeyValues kv = *this;
  kv.storage_ = storage;
  kv.bind_views();
  return kv;
}

void EncoderKeyValues::bind_views() {
  views_.clear();
  for (const Slot& slot : slots_) {
    const int64_t numel = c10::multiply_integers(slot.sizes);
    views_.push_back(KeyValue{storage_.narrow(0, slot.key_offset, numel).view(slot.sizes),
                              storage_.narrow(0, slot.value_offset, numel).view(slot.sizes)});
  }
}

const EncoderKeyValues::KeyValue& EncoderKeyValues::of(const Attention* layer) const {
  const auto found = index_.find(layer);
  if (found == index_.end()) {
    throw ValueError("projected encoder keys and values do not cover this attention layer");
  }
  return views_[found->second];
}

}  // namespace nd
