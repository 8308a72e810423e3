// The keys and values a model's cross-attention layers project from the encoder states. The
// states are the same at every denoising step of one prompt, so a pipeline projects them once per
// prompt instead of at every UNet call (diffusers projects them at every call: two GEMMs per
// cross-attention layer per step, 32 in an SD 1.5 step and 140 in an SDXL one). All of them share
// one flat tensor, so that a captured CUDA graph keeps them in one static buffer that is copied
// when the prompt changes rather than at every step.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

namespace nd {

class Attention;

using CrossAttentionVisitor = std::function<void(const Attention& layer)>;

class EncoderKeyValues {
 public:
  struct KeyValue {
    at::Tensor key;    // [B, S, inner]
    at::Tensor value;  // [B, S, inner]
  };

  EncoderKeyValues() = default;

  // Projects `states` [B, S, D] through every layer `for_each_layer` reports. `model` is the one
  // the layers belong to; forward checks it, so that another model's projections cannot slip in.
  static EncoderKeyValues project(const std::function<void(const CrossAttentionVisitor&)>& for_each_layer,
                                  const at::Tensor& states, const void* model);

  // The same layers read from `storage`, a copy of storage() (the static buffer of a graph).
  EncoderKeyValues over(const at::Tensor& storage) const;

  // The projection of `layer`; throws if this was not projected through it.
  const KeyValue& of(const Attention* layer) const;

  const at::Tensor& storage() const { return storage_; }
  // Distinct for every projection: equal generations mean equal contents.
  uint64_t generation() const { return generation_; }
  const void* model() const { return model_; }
  int64_t batch() const { return batch_; }

 private:
  struct Slot {
    int64_t key_offset = 0, value_offset = 0;  // elements into storage_
    std::vector<int64_t> sizes;                // [B, S, inner]
  };
  void bind_views();

  at::Tensor storage_;  // 1-D, every key and value, each starting at an aligned element
  std::vector<Slot> slots_;
  std::vector<KeyValue> views_;                       // slot i over storage_
  std::unordered_map<const Attention*, std::size_t> index_;  // layer -> slot
  uint64_t generation_ = 0;
  const void* model_ = nullptr;
  int64_t batch_ = 0;
};

// What an attention layer attends to besides its input: the encoder states, and, when a pipeline
// projected them once for the whole denoising loop, their keys and values. Converts from a bare
// tensor so that callers without projections (the VAEs, a direct UNet call) pass the states alone.
struct EncoderContext {
  EncoderContext() = default;
  EncoderContext(at::Tensor encoder_states) : states(std::move(encoder_states)) {}  // NOLINT(runtime/explicit)
  EncoderContext(at::Tensor encoder_states, const EncoderKeyValues* projections)
      : states(std::move(encoder_states)), projected(projections) {}

  at::Tensor states;                            // [B, S, D], or undefined
  const EncoderKeyValues* projected = nullptr;  // null: layers project `states` themselves
};

}  // namespace nd
