// The flat store of projected cross-attention keys and values: what the layers read equals what
// they would project, every slice is aligned for the CUDA kernels' vector loads, and a copy of the
// storage (a graph's static buffer) is read in place of the original. Parity of whole UNets with
// and without projections lives in tests/python/models/test_models_unet_2d_condition*.py.
#include "models/encoder_key_values.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "core/errors.h"
#include "models/attention_processor.h"

namespace nd {
namespace {

constexpr int64_t kQueryDim = 24, kContextDim = 20, kHeads = 3, kDimHead = 8;

// One cross-attention layer with random weights, as BasicTransformerBlock's attn2.
Attention cross_attention(int seed) {
  at::manual_seed(seed);
  const int64_t inner = kHeads * kDimHead;
  io::StateDict sd;
  sd["a.to_q.weight"] = at::randn({inner, kQueryDim});
  sd["a.to_k.weight"] = at::randn({inner, kContextDim});
  sd["a.to_v.weight"] = at::randn({inner, kContextDim});
  sd["a.to_out.0.weight"] = at::randn({kQueryDim, inner});
  sd["a.to_out.0.bias"] = at::randn({kQueryDim});
  AttentionConfig c;
  c.query_dim = kQueryDim;
  c.cross_attention_dim = kContextDim;
  c.heads = kHeads;
  c.dim_head = kDimHead;
  return Attention::load(WeightLoader(sd, "test", std::nullopt).child("a"), c);
}

// Where `view` starts in `storage`: CUDA allocations start 512-byte aligned, so a multiple of 128
// here keeps every slice as aligned as the kernels' vector loads need.
int64_t byte_offset(const at::Tensor& view, const at::Tensor& storage) {
  return static_cast<const char*>(view.data_ptr()) - static_cast<const char*>(storage.data_ptr());
}

struct TwoLayers {
  Attention first = cross_attention(1);
  Attention second = cross_attention(2);
  EncoderKeyValues project(const at::Tensor& states) const {
    return EncoderKeyValues::project(
        [this](const CrossAttentionVisitor& visit) {
          visit(first);
          visit(second);
        },
        states, this);
  }
};

TEST(EncoderKeyValues, LayersReadWhatTheyWouldProject) {
  const TwoLayers model;
  const at::Tensor states = at::randn({2, 7, kContextDim});  // 7 tokens: odd sizes between slices
  const EncoderKeyValues kv = model.project(states);
  for (const Attention* layer : {&model.first, &model.second}) {
    const auto [key, value] = layer->project_encoder_states(states);
    EXPECT_TRUE(at::equal(kv.of(layer).key, key));
    EXPECT_TRUE(at::equal(kv.of(layer).value, value));
    EXPECT_EQ(byte_offset(kv.of(layer).key, kv.storage()) % 128, 0);
    EXPECT_EQ(byte_offset(kv.of(layer).value, kv.storage()) % 128, 0);
  }
  const at::Tensor hidden = at::randn({2, 5, kQueryDim});
  EXPECT_TRUE(at::equal(model.second.forward(hidden, EncoderContext(at::Tensor(), &kv)),
                        model.second.forward(hidden, states)));
  EXPECT_EQ(kv.model(), &model);
  EXPECT_EQ(kv.batch(), 2);
}

TEST(EncoderKeyValues, ACopyOfTheStorageIsReadInstead) {
  const TwoLayers model;
  const at::Tensor states = at::randn({1, 7, kContextDim});
  const EncoderKeyValues kv = model.project(states);
  const at::Tensor copy = kv.storage().clone();
  const EncoderKeyValues over_copy = kv.over(copy);
  EXPECT_EQ(over_copy.of(&model.first).key.data_ptr(), copy.data_ptr());
  EXPECT_TRUE(at::equal(over_copy.of(&model.second).value, kv.of(&model.second).value));
  EXPECT_EQ(over_copy.generation(), kv.generation());
  EXPECT_THROW(kv.over(copy.narrow(0, 0, copy.numel() - 1)), ValueError);
}

TEST(EncoderKeyValues, EachProjectionIsANewGeneration) {
  const TwoLayers model;
  const at::Tensor states = at::randn({1, 7, kContextDim});
  EXPECT_NE(model.project(states).generation(), model.project(states).generation());
}

TEST(EncoderKeyValues, UnknownLayersAndSelfAttentionAreRefused) {
  const TwoLayers model;
  const Attention stranger = cross_attention(3);
  const EncoderKeyValues kv = model.project(at::randn({1, 7, kContextDim}));
  EXPECT_THROW(kv.of(&stranger), ValueError);
  // A forward with projections that do not cover the layer raises instead of attending to itself.
  EXPECT_THROW(stranger.forward(at::randn({1, 5, kQueryDim}), EncoderContext(at::Tensor(), &kv)), ValueError);
}

}  // namespace
}  // namespace nd
