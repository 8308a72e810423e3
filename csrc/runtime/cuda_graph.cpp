#include "runtime/cuda_graph.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <sstream>

#ifdef ND_WITH_TORCH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

#include "runtime/cuda_streams.h"
#include "runtime/fused_ops.h"
#include "runtime/memory_format.h"

namespace nd {
namespace {

std::atomic<bool>& graphs_flag() {
  static std::atomic<bool> flag{[] {
    const char* env = std::getenv("ND_CUDA_GRAPHS");
    return !(env && std::string(env) == "0");
  }()};
  return flag;
}

}  // namespace

bool cuda_graphs_enabled() { return graphs_flag().load(); }
void set_cuda_graphs_enabled(bool enabled) { graphs_flag().store(enabled); }

std::string tensor_signature(const std::vector<at::Tensor>& inputs) {
  std::ostringstream out;
  for (const at::Tensor& t : inputs) {
    if (!t.defined()) {
      out << "-|";
      continue;
    }
    out << t.sizes() << t.strides() << ':' << t.scalar_type() << ':' << t.device() << '|';
  }
  return out.str();
}

std::size_t weights_fingerprint(
    const std::function<void(const std::function<at::Tensor(const at::Tensor&)>&)>& visit_parameters) {
  std::size_t fingerprint = 0;
  visit_parameters([&](const at::Tensor& t) {
    fingerprint = fingerprint * 1000003u ^ reinterpret_cast<std::uintptr_t>(t.data_ptr()) ^ t.numel();
    return t;
  });
  return fingerprint;
}

void ModelGraphs::weights_visited(const Visitor& visit_parameters) {
  bool on_gpu = false;
  visit_parameters([&](const at::Tensor& t) {
    on_gpu = on_gpu || t.is_cuda();
    return t;
  });
  if (!on_gpu) return;  // away (offloaded, or on the CPU): nothing can replay meanwhile
  const std::size_t fingerprint = weights_fingerprint(visit_parameters);
  if (fingerprint == captured_with_) return;
  graphs_ = std::make_shared<CudaGraphCache>();
  captured_with_ = fingerprint;
}

void ModelGraphs::drop() {
  graphs_ = std::make_shared<CudaGraphCache>();
  captured_with_ = 0;
}

// Member order matters: the graph is declared first so that it is destroyed last, after the
// tensors that live in its private memory pool.
struct CudaGraphCache::Entry {
#ifdef ND_WITH_TORCH_CUDA
  std::unique_ptr<at::cuda::CUDAGraph> graph;  // null: this signature could not be captured
#endif
  std::string signature;
  std::vector<at::Tensor> static_inputs;  // the inputs, then the lasting inputs
  std::vector<uint64_t> lasting_generations;
  at::Tensor static_output;
};

CudaGraphCache::CudaGraphCache(std::size_t capacity) : capacity_(capacity) {}
CudaGraphCache::~CudaGraphCache() = default;

void CudaGraphCache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.clear();
}

std::size_t CudaGraphCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

namespace {

// What the body receives: the inputs, then the lasting inputs.
std::vector<at::Tensor> with_lasting(std::vector<at::Tensor> inputs,
                                     const std::vector<CudaGraphCache::LastingInput>& lasting) {
  for (const CudaGraphCache::LastingInput& l : lasting) inputs.push_back(l.tensor);
  return inputs;
}

}  // namespace

#ifndef ND_WITH_TORCH_CUDA

// Without a CUDA build of torch there is nothing to capture (and capture() is never defined).
at::Tensor CudaGraphCache::run(const std::vector<at::Tensor>& inputs, const Body& body,
                               const std::vector<LastingInput>& lasting) {
  return body(with_lasting(inputs, lasting));
}

#else

namespace {

// Graphs apply when every defined input is a CUDA tensor on one device and no outer capture is
// running (a graph cannot be captured inside another one; the outer capture records our kernels).
std::optional<c10::Device> graph_device(const std::vector<at::Tensor>& inputs) {
  std::optional<c10::Device> device;
  for (const at::Tensor& t : inputs) {
    if (!t.defined()) continue;
    if (!t.is_cuda() || (device && t.device() != *device)) return std::nullopt;
    device = t.device();
  }
  if (!device) return std::nullopt;
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device->index()).stream();
  if (cudaStreamIsCapturing(stream, &status) != cudaSuccess || status != cudaStreamCaptureStatusNone) {
    return std::nullopt;
  }
  return device;
}

// A failed capture leaves the stream in capture mode; end it so the stream is usable again.
void abandon_capture(cudaStream_t stream) {
  cudaGraph_t partial = nullptr;
  if (cudaStreamEndCapture(stream, &partial) == cudaSuccess && partial) cudaGraphDestroy(partial);
  cudaGetLastError();  // capture-invalidation errors are not sticky; clear the last-error slot
}

}  // namespace

CudaGraphCache::Entry& CudaGraphCache::capture(const std::string& signature, const std::vector<at::Tensor>& inputs,
                                               const Body& body, const std::vector<LastingInput>& lasting) {
  auto entry = std::make_unique<Entry>();
  entry->signature = signature;
  for (const at::Tensor& t : inputs) entry->static_inputs.push_back(t.defined() ? t.clone() : at::Tensor());
  for (const LastingInput& l : lasting) {
    entry->static_inputs.push_back(l.tensor.defined() ? l.tensor.clone() : at::Tensor());
    entry->lasting_generations.push_back(l.generation);
  }

  const c10::Device device = *graph_device(inputs);
  const c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream(device.index());
  const c10::cuda::CUDAStream side = side_stream(SideStream::kGraphCapture, device.index());
  // Ref: torch.cuda.graphs.make_graphed_callables: warm up and capture on a side stream.
  at::cuda::CUDAEvent inputs_ready;
  inputs_ready.record(caller);
  inputs_ready.block(side);
  {
    const c10::cuda::CUDAStreamGuard on_side(side);
    // The warm-up run initialises cuBLAS/cuDNN handles and workspaces, which must not be captured,
    // and raises any argument error before a capture is open.
    body(entry->static_inputs);
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    try {
      graph->capture_begin();
      entry->static_output = body(entry->static_inputs);
      graph->capture_end();
      entry->graph = std::move(graph);
    } catch (const std::exception& e) {
      abandon_capture(side.stream());
      entry->static_output = at::Tensor();
      TORCH_WARN_ONCE("native_diffusers: CUDA graph capture failed, running this call eagerly from now on: ",
                      e.what());
    }
  }
  at::cuda::CUDAEvent captured;
  captured.record(side);
  captured.block(caller);

  if (entries_.size() >= capacity_) entries_.pop_back();
  entries_.push_front(std::move(entry));
  return *entries_.front();
}

at::Tensor CudaGraphCache::run(const std::vector<at::Tensor>& inputs, const Body& body,
                               const std::vector<LastingInput>& lasting) {
  const std::vector<at::Tensor> all_inputs = with_lasting(inputs, lasting);
  if (!cuda_graphs_enabled()) return body(all_inputs);
  const std::optional<c10::Device> device = graph_device(all_inputs);
  if (!device) return body(all_inputs);
  const c10::cuda::CUDAGuard device_guard(*device);
  std::lock_guard<std::mutex> lock(mutex_);

  // The kernel and layout switches are part of what a graph recorded: flipping one must capture anew.
  const std::string signature = tensor_signature(all_inputs) + (fused_kernels_enabled() ? "K" : "k") +
                                (fused_attention_enabled() ? "A" : "a") + (channels_last_on(*device) ? "L" : "l");
  Entry* entry = nullptr;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if ((*it)->signature != signature) continue;
    entries_.splice(entries_.begin(), entries_, it);  // most recently used first
    entry = entries_.front().get();
    break;
  }
  if (!entry) {
    entry = &capture(signature, inputs, body, lasting);
  } else {
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].defined()) entry->static_inputs[i].copy_(inputs[i], /*non_blocking=*/true);
    }
    for (std::size_t i = 0; i < lasting.size(); ++i) {
      if (!lasting[i].tensor.defined() || entry->lasting_generations[i] == lasting[i].generation) continue;
      entry->static_inputs[inputs.size() + i].copy_(lasting[i].tensor, /*non_blocking=*/true);
      entry->lasting_generations[i] = lasting[i].generation;
    }
  }
  if (!entry->graph) return body(all_inputs);
  entry->graph->replay();
  // The static output is overwritten by the next replay; the caller gets its own copy.
  return entry->static_output.clone();
}

#endif

}  // namespace nd
