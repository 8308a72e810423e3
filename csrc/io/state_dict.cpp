#include "io/state_dict.h"

#include <ATen/ATen.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/errors.h"
#include "io/safetensors.h"

namespace nd::io {
namespace {

std::atomic<bool>& copy_on_load_flag() {
  static std::atomic<bool> flag{[] {
    const char* env = std::getenv("ND_COPY_WEIGHTS_ON_LOAD");
    return env != nullptr && std::string(env) == "1";
  }()};
  return flag;
}

at::ScalarType to_scalar_type(DType dtype, const std::string& origin) {
  switch (dtype) {
    case DType::BOOL: return at::kBool;
    case DType::U8: return at::kByte;
    case DType::I8: return at::kChar;
    case DType::I16: return at::kShort;
    case DType::U16: return at::kUInt16;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I32: return at::kInt;
    case DType::U32: return at::kUInt32;
    case DType::F32: return at::kFloat;
    case DType::F64: return at::kDouble;
    case DType::I64: return at::kLong;
    case DType::U64: return at::kUInt64;
    case DType::F8_E4M3: return at::kFloat8_e4m3fn;
    case DType::F8_E5M2: return at::kFloat8_e5m2;
  }
  throw ValueError("unsupported dtype in " + origin);
}

at::Tensor view_tensor(const std::shared_ptr<SafetensorsFile>& file, const TensorInfo& info) {
  const at::ScalarType scalar_type = to_scalar_type(info.dtype, file->path());
  const auto options = at::TensorOptions().dtype(scalar_type).device(at::kCPU);
  const uint8_t* data = file->data(info);
  const std::size_t element_size = dtype_size(info.dtype);
  // The format does not promise alignment; kernels may assume it, so copy the rare odd tensor.
  const bool aligned = reinterpret_cast<std::uintptr_t>(data) % element_size == 0;
  if (!aligned || info.end == info.begin || copy_weights_on_load()) {
    at::Tensor out = at::empty(info.shape, options);
    if (info.end > info.begin) std::memcpy(out.data_ptr(), data, info.end - info.begin);
    return out;
  }
  // The deleter owns a reference to the mapping, so the bytes outlive every view into them.
  auto keep_alive = file;
  return at::from_blob(
      const_cast<uint8_t*>(data), info.shape, [keep_alive](void*) mutable { keep_alive.reset(); },
      options);
}

}  // namespace

bool copy_weights_on_load() { return copy_on_load_flag().load(); }
void set_copy_weights_on_load(bool enabled) { copy_on_load_flag().store(enabled); }

StateDict load_safetensors(const std::string& path) {
  const std::shared_ptr<SafetensorsFile> file = SafetensorsFile::open(path);
  StateDict out;
  for (const TensorInfo& info : file->tensors()) out.emplace(info.name, view_tensor(file, info));
  return out;
}

StateDict load_safetensors(const std::vector<std::string>& paths) {
  StateDict out;
  for (const std::string& path : paths) {
    for (auto& [name, tensor] : load_safetensors(path)) {
      if (!out.emplace(name, std::move(tensor)).second) {
        throw ValueError("tensor '" + name + "' appears in more than one shard (again in " + path +
                         ")");
      }
    }
  }
  return out;
}

}  // namespace nd::io
