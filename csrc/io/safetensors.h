// Mirrors the safetensors format (huggingface/safetensors, safetensors/src/tensor.rs): an 8-byte
// little-endian header length, a JSON header, then raw little-endian tensor bytes. Torch-free, so
// the parser can be tested and fuzzed on its own; io/state_dict.h turns it into at::Tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace nd::io {

// The dtype strings safetensors writes; anything else in a header is rejected.
enum class DType {
  BOOL,
  U8,
  I8,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64,
  F8_E4M3,
  F8_E5M2
};

std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  // Byte range [begin, end) relative to the start of the data section (after the header).
  uint64_t begin = 0;
  uint64_t end = 0;
};

// One parsed, fully validated safetensors file. Files are untrusted: every length, offset and
// shape is checked when the file is opened, so data() never points outside the buffer.
class SafetensorsFile {
 public:
  // The safetensors reference implementation refuses headers above 100 MB; so do we.
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  // Memory-maps `path`. Missing/unreadable file -> OSError; malformed content -> ValueError.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  // Parses bytes already in memory (tests, fuzzing); `origin` names the source in errors.
  static std::shared_ptr<SafetensorsFile> from_bytes(std::string bytes, std::string origin);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // Sorted by name.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  // First byte of the tensor. The mapping is private and writable, so a caller that writes into
  // a zero-copy tensor changes its own copy-on-write page instead of faulting or touching disk.
  const uint8_t* data(const TensorInfo& info) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The file path, or the origin given to from_bytes.
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  void parse();
  [[noreturn]] void fail(const std::string& problem) const;

  std::string path_;
  std::string owned_;        // from_bytes keeps its buffer here
  void* mapping_ = nullptr;  // open() keeps its mmap here
  std::size_t mapping_size_ = 0;
  const uint8_t* bytes_ = nullptr;
  uint64_t size_ = 0;
  uint64_t data_start_ = 0;  // 8 + header length
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace nd::io
