// Side streams the engine keeps for itself, one per purpose and device for the whole process.
// torch caches a cuBLAS workspace (and allocator pools) per stream that ever runs work, so taking a
// fresh pool stream for every CUDA graph capture or prefetch would grow memory with each one.
#pragma once

#ifdef ND_WITH_TORCH_CUDA
#include <c10/core/Device.h>
#include <c10/cuda/CUDAStream.h>

namespace nd {

enum class SideStream {
  kGraphCapture,  // CUDA graph warm-up and capture (runtime/cuda_graph)
  kWeightCopy,    // offload prefetch: the next block or the next model (offload/)
};

c10::cuda::CUDAStream side_stream(SideStream purpose, c10::DeviceIndex device);

}  // namespace nd
#endif
