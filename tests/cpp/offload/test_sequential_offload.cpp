// SequentialCpuOffload's streaming bookkeeping on the CPU (the execution device is the host too,
// so moves are no-ops on the data): which blocks are resident as a forward walks them, the
// prefetch of the block that came next last time, and the thread's streaming switch.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "offload/sequential_offload.h"

namespace nd {
namespace {

struct Block {
  at::Tensor weight = at::randn({3, 3});
  void apply(const ParameterFn& fn) { weight = fn(weight); }
};

// A model with its own parameter (`stem`) and three streamable blocks.
struct BlockModel {
  at::Tensor stem = at::randn({2});
  std::vector<Block> blocks = std::vector<Block>(3);
  void apply(const ParameterFn& fn) {
    stem = fn(stem);
    for (Block& b : blocks) b.apply(fn);
  }
  void for_each_unit(const UnitVisitor& visit) {
    for (Block& b : blocks) visit_unit(visit, b);
  }
  void forward() const {
    for (const Block& b : blocks) stream_in(&b);
  }
};

std::shared_ptr<SequentialCpuOffload> make_offload(const std::shared_ptr<BlockModel>& unet,
                                                   const std::shared_ptr<BlockModel>& text_encoder) {
  std::vector<OffloadComponent> components;
  add_offload_component(components, "text_encoder", text_encoder);
  add_streamed_component(components, "unet", unet);
  return std::make_shared<SequentialCpuOffload>(components, c10::Device(c10::kCPU));
}

TEST(SequentialCpuOffload, BlocksStreamInAsTheForwardReachesThem) {
  auto unet = std::make_shared<BlockModel>();
  auto text_encoder = std::make_shared<BlockModel>();
  auto offload = make_offload(unet, text_encoder);
  EXPECT_TRUE(offload->resident().empty());
  EXPECT_EQ(offload->resident_units(), 0u);

  offload->activate("unet");
  EXPECT_EQ(offload->resident(), std::vector<std::string>{"unet"});
  EXPECT_TRUE(streaming_active());
  offload->enter(&unet->blocks[0]);
  EXPECT_EQ(offload->resident_units(), 1u);
  offload->enter(&unet->blocks[1]);  // first pass: no order known yet, so no prefetch
  EXPECT_EQ(offload->resident_units(), 1u);
  offload->enter(&unet->blocks[2]);
  offload->enter(&unet->blocks[0]);  // second step: block 1 followed block 0 last time
  EXPECT_EQ(offload->resident_units(), 2u);
  offload->enter(&text_encoder->blocks[0]);  // not the running component's: ignored
  EXPECT_EQ(offload->resident_units(), 2u);
}

TEST(SequentialCpuOffload, ForwardHooksReachTheInstalledOffloadOnly) {
  auto unet = std::make_shared<BlockModel>();
  auto text_encoder = std::make_shared<BlockModel>();
  auto offload = make_offload(unet, text_encoder);
  unet->forward();  // nothing installed yet
  EXPECT_EQ(offload->resident_units(), 0u);
  offload->activate("unet");
  unet->forward();
  unet->forward();
  EXPECT_GE(offload->resident_units(), 1u);
  EXPECT_LE(offload->resident_units(), 2u);  // the current block and the prefetched one at most
  offload->activate("text_encoder");         // the UNet's blocks all go home
  EXPECT_EQ(offload->resident_units(), 0u);
  EXPECT_EQ(offload->resident(), std::vector<std::string>{"text_encoder"});
  offload->offload_all();
  EXPECT_FALSE(streaming_active());
  EXPECT_TRUE(offload->resident().empty());
}

TEST(SequentialCpuOffload, WeightsKeepTheirValuesThroughStreaming) {
  auto unet = std::make_shared<BlockModel>();
  auto text_encoder = std::make_shared<BlockModel>();
  const at::Tensor before = unet->blocks[1].weight.clone();
  auto offload = make_offload(unet, text_encoder);
  offload->activate("unet");
  for (int step = 0; step < 3; ++step) unet->forward();
  EXPECT_TRUE(at::equal(unet->blocks[1].weight, before));
  offload->offload_all();
  EXPECT_TRUE(at::equal(unet->blocks[1].weight, before));
}

TEST(SequentialCpuOffload, ADestroyedOffloadLeavesNoStreamingBehind) {
  auto unet = std::make_shared<BlockModel>();
  auto text_encoder = std::make_shared<BlockModel>();
  {
    auto offload = make_offload(unet, text_encoder);
    offload->activate("unet");  // and never offload_all: an exception mid-call
    EXPECT_TRUE(streaming_active());
  }
  EXPECT_FALSE(streaming_active());
  unet->forward();  // must not touch the destroyed offload
}

}  // namespace
}  // namespace nd
