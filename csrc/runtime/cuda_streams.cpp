#include "runtime/cuda_streams.h"

#ifdef ND_WITH_TORCH_CUDA
#include <map>
#include <mutex>
#include <utility>

namespace nd {

c10::cuda::CUDAStream side_stream(SideStream purpose, c10::DeviceIndex device) {
  static std::mutex mutex;
  static std::map<std::pair<int, c10::DeviceIndex>, c10::cuda::CUDAStream> streams;
  std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_pair(static_cast<int>(purpose), device);
  auto found = streams.find(key);
  if (found == streams.end()) {
    found = streams.emplace(key, c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device)).first;
  }
  return found->second;
}

}  // namespace nd
#endif
