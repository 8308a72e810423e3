// ModelCpuOffload's bookkeeping on the CPU (the execution device here is the host too, so the
// moves are copies between host tensors): which component is resident after each step, and that
// sending a component home restores its own host weights rather than copies of them.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "runtime/memory_format.h"
#include "offload/model_offload.h"

namespace nd {
namespace {

struct TwoTensorModel {
  at::Tensor weight = at::randn({4, 3});
  at::Tensor bias = at::randn({4});
  void apply(const ParameterFn& fn) {
    weight = fn(weight);
    bias = fn(bias);
  }
};

struct Fixture {
  std::shared_ptr<TwoTensorModel> text_encoder = std::make_shared<TwoTensorModel>();
  std::shared_ptr<TwoTensorModel> unet = std::make_shared<TwoTensorModel>();
  std::shared_ptr<TwoTensorModel> vae = std::make_shared<TwoTensorModel>();
  std::shared_ptr<TwoTensorModel> absent;

  std::vector<ModelCpuOffload::Component> components() const {
    std::vector<ModelCpuOffload::Component> out;
    add_offload_component(out, "text_encoder", text_encoder);
    add_offload_component(out, "text_encoder_2", absent);
    add_offload_component(out, "unet", unet);
    add_offload_component(out, "vae", vae);
    return out;
  }
};

TEST(ModelCpuOffload, AbsentComponentsAreSkipped) {
  Fixture f;
  EXPECT_EQ(f.components().size(), 3u);
}

TEST(ModelCpuOffload, OnlyTheActivatedComponentIsResident) {
  Fixture f;
  ModelCpuOffload offload(f.components(), c10::Device(c10::kCPU));
  EXPECT_TRUE(offload.resident().empty());
  offload.activate("text_encoder");
  EXPECT_EQ(offload.resident(), std::vector<std::string>{"text_encoder"});
  offload.activate("unet");
  EXPECT_EQ(offload.resident(), std::vector<std::string>{"unet"});
  offload.activate("text_encoder_2");  // absent from this pipeline: everything goes home
  EXPECT_TRUE(offload.resident().empty());
  offload.activate("vae");
  offload.activate("vae");
  EXPECT_EQ(offload.resident(), std::vector<std::string>{"vae"});
  offload.offload_all();
  EXPECT_TRUE(offload.resident().empty());
}

TEST(ModelCpuOffload, APrefetchedComponentWaitsForItsActivation) {
  Fixture f;
  ModelCpuOffload offload(f.components(), c10::Device(c10::kCPU));
  offload.activate("text_encoder");
  offload.prefetch("unet");  // copies while the text encoder computes
  EXPECT_EQ(offload.resident(), (std::vector<std::string>{"text_encoder", "unet"}));
  offload.activate("text_encoder");  // the negative prompt: same encoder, the prefetch stays
  offload.prefetch("unet");
  EXPECT_EQ(offload.resident(), (std::vector<std::string>{"text_encoder", "unet"}));
  offload.activate("unet");
  EXPECT_EQ(offload.resident(), std::vector<std::string>{"unet"});
  offload.prefetch("unet");  // already active: nothing to do
  offload.prefetch("text_encoder_2");  // absent from this pipeline: ignored
  EXPECT_EQ(offload.resident(), std::vector<std::string>{"unet"});
}

TEST(ModelCpuOffload, AHintThatDoesNotComeTrueIsSentHome) {
  Fixture f;
  ModelCpuOffload offload(f.components(), c10::Device(c10::kCPU));
  offload.activate("unet");
  offload.prefetch("vae");
  offload.activate("text_encoder");  // not the component announced: the prefetch is undone
  EXPECT_EQ(offload.resident(), std::vector<std::string>{"text_encoder"});
  offload.prefetch("vae");
  offload.offload_all();
  EXPECT_TRUE(offload.resident().empty());
}

TEST(ModelCpuOffload, SendingHomeRestoresTheHostWeightsThemselves) {
  Fixture f;
  const at::Tensor original = f.unet->weight.clone();
  ModelCpuOffload offload(f.components(), c10::Device(c10::kCPU));
  const void* host = f.unet->weight.data_ptr();
  offload.activate("unet");  // on a CUDA device this is a copy; on the host, the same tensor
  EXPECT_TRUE(at::equal(f.unet->weight, original));
  offload.activate("vae");
  EXPECT_EQ(f.unet->weight.data_ptr(), host);  // no copy back: the host weights never changed
  EXPECT_TRUE(at::equal(f.unet->weight, original));
}

struct ConvModel {
  at::Tensor conv = at::randn({8, 4, 3, 3});
  at::Tensor bias = at::randn({8});
  at::Tensor empty = at::empty({0});
  at::Tensor strided = at::randn({6, 5}).t();  // not contiguous: packed dense
  void apply(const ParameterFn& fn) {
    conv = fn(conv);
    bias = fn(bias);
    empty = fn(empty);
    strided = fn(strided);
  }
};

ApplyFn apply_of(ConvModel& model) {
  return [&model](const ParameterFn& fn) { model.apply(fn); };
}

TEST(HostWeights, PacksAComponentIntoOneAlignedBlockInVisitOrder) {
  ConvModel model;
  const std::vector<at::Tensor> original{model.conv.clone(), model.bias.clone(), model.strided.clone()};
  const HostWeights host(apply_of(model), c10::Device(c10::kCPU));
  const at::Tensor& block = host.block();
  ASSERT_EQ(host.tensors().size(), 4u);
  const auto* base = static_cast<const uint8_t*>(block.data_ptr());
  int64_t previous = -1;
  for (const at::Tensor& t : host.tensors()) {
    EXPECT_TRUE(t.storage().is_alias_of(block.storage()));
    if (t.numel() == 0) continue;  // an empty tensor has no data pointer
    const int64_t offset = static_cast<const uint8_t*>(t.data_ptr()) - base;
    EXPECT_GT(offset, previous);
    EXPECT_EQ(offset % 256, 0);
    previous = offset;
  }
  // The model now points at the packed copies, with the same values.
  EXPECT_EQ(model.conv.data_ptr(), host.tensors()[0].data_ptr());
  EXPECT_TRUE(at::equal(model.conv, original[0]));
  EXPECT_TRUE(at::equal(model.bias, original[1]));
  EXPECT_TRUE(at::equal(model.strided, original[2]));
  EXPECT_TRUE(model.strided.is_non_overlapping_and_dense());
  EXPECT_EQ(model.empty.numel(), 0);
}

TEST(HostWeights, KeepsTheLayoutItsTargetUses) {
  const ChannelsLastMode mode = channels_last_mode();
  set_channels_last_mode(ChannelsLastMode::kOn);
  ConvModel model;
  const at::Tensor original = model.conv.clone();
  const HostWeights host(apply_of(model), c10::Device(c10::kCPU));
  set_channels_last_mode(mode);
  EXPECT_TRUE(model.conv.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(at::equal(model.conv, original));
}

TEST(HostWeights, AComponentsShareOfItsBlockIsNotCopiedAgain) {
  ConvModel model;
  const HostWeights component(apply_of(model), c10::Device(c10::kCPU));
  // A block of the component (sequential offload's unit): its parameters, already in the block.
  const ApplyFn unit = [&model](const ParameterFn& fn) {
    model.bias = fn(model.bias);
    model.empty = fn(model.empty);
  };
  const void* bias = model.bias.data_ptr();
  const HostWeights part(unit, c10::Device(c10::kCPU));
  EXPECT_EQ(model.bias.data_ptr(), bias);
  EXPECT_TRUE(part.block().storage().is_alias_of(component.block().storage()));
  EXPECT_LT(part.block().numel(), component.block().numel());
  EXPECT_EQ(part.block().data_ptr(), bias);
}

TEST(CopyFence, AHostCopyLeavesNothingToWaitFor) {
  TwoTensorModel model;
  const ApplyFn apply = [&model](const ParameterFn& fn) { model.apply(fn); };
  const HostWeights host(apply, c10::Device(c10::kCPU));
  CopyFence fence = host.to_device_async(apply, c10::Device(c10::kCPU));
  EXPECT_FALSE(fence.pending());
  fence.wait(c10::Device(c10::kCPU));
  EXPECT_TRUE(at::equal(model.weight, host.tensors()[0]));
}

}  // namespace
}  // namespace nd
