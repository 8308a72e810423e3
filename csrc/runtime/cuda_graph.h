// Replays a function's CUDA work from a captured CUDA graph, one graph per input signature.
// A plain-ATen UNet step on an H100 is launch-bound (about a thousand kernel launches for SD 1.5,
// 28.7 ms per step in diffusers against a few ms of GPU work): replaying a graph costs one launch.
// On the CPU, without a CUDA build of torch, or while an outer graph is being captured (the
// UNet under torch.compile(mode="reduce-overhead")), the function simply runs.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace nd {

// Process-wide switch, on by default; ND_CUDA_GRAPHS=0 in the environment turns it off.
bool cuda_graphs_enabled();
void set_cuda_graphs_enabled(bool enabled);

class CudaGraphCache {
 public:
  // Inputs may be undefined (an absent optional input); defined ones must all be on one device.
  using Body = std::function<at::Tensor(const std::vector<at::Tensor>& inputs)>;

  // An input that stays the same over many calls (a prompt's projected keys and values): its
  // static copy is refreshed only when `generation` differs from the one the copy holds, instead
  // of at every replay. The caller promises that equal generations mean equal contents.
  struct LastingInput {
    at::Tensor tensor;
    uint64_t generation = 0;
  };

  // Entry is complete only in the .cpp, so construction and destruction live there.
  explicit CudaGraphCache(std::size_t capacity = 4);
  ~CudaGraphCache();
  CudaGraphCache(const CudaGraphCache&) = delete;
  CudaGraphCache& operator=(const CudaGraphCache&) = delete;

  // body(inputs), from a graph replay when the inputs are CUDA tensors and graphs are enabled.
  // The first call with a new signature warms up, captures and replays; later calls copy the
  // inputs into the captured buffers and replay. The result is the caller's own tensor.
  // `lasting` inputs reach the body after `inputs`, in order.
  at::Tensor run(const std::vector<at::Tensor>& inputs, const Body& body,
                 const std::vector<LastingInput>& lasting = {});

  // Drops every captured graph and its memory pool. Call when the weights the body reads move
  // (a captured graph holds their addresses).
  void clear();
  std::size_t size() const;

 private:
  struct Entry;
  Entry& capture(const std::string& signature, const std::vector<at::Tensor>& inputs, const Body& body,
                 const std::vector<LastingInput>& lasting);

  std::size_t capacity_;
  mutable std::mutex mutex_;
  std::list<std::unique_ptr<Entry>> entries_;  // most recently used first
};

// The graphs one model captured, kept valid as its weights move. A graph reads the weights by
// address. Model offloading sends them home after each call and back before the next, to the same
// addresses as a rule (one device block per model, handed back by the caching allocator), so the
// graphs wait while the weights are away and are dropped only when the weights come back
// elsewhere, or when the model is moved on purpose (.to(), which must give its GPU memory back).
class ModelGraphs {
 public:
  using Visitor = std::function<void(const std::function<at::Tensor(const at::Tensor&)>&)>;

  at::Tensor run(const std::vector<at::Tensor>& inputs, const CudaGraphCache::Body& body,
                 const std::vector<CudaGraphCache::LastingInput>& lasting = {}) const {
    return graphs_->run(inputs, body, lasting);
  }
  // After the weights were visited (moved, or only read): checks where they are now.
  void weights_visited(const Visitor& visit_parameters);
  // The model was moved on purpose: every graph goes, with its memory pool.
  void drop();

 private:
  std::shared_ptr<CudaGraphCache> graphs_ = std::make_shared<CudaGraphCache>();
  std::size_t captured_with_ = 0;  // weights fingerprint the graphs were captured with
};

// "[2,4,64,64]:Half:cuda:0|..." for defined inputs, "-" for undefined ones.
std::string tensor_signature(const std::vector<at::Tensor>& inputs);

// The addresses of a model's weights, hashed, from its parameter visitor: the graphs it captured
// stay valid exactly while this is unchanged.
std::size_t weights_fingerprint(
    const std::function<void(const std::function<at::Tensor(const at::Tensor&)>&)>& visit_parameters);

}  // namespace nd
