#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "core/errors.h"
#include "io/json_config.h"

namespace nd::io {
namespace {

using Json = nlohmann::json;

struct DTypeEntry {
  DType dtype;
  const char* name;
  std::size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},           {DType::I8, "I8", 1},
    {DType::I16, "I16", 2},   {DType::U16, "U16", 2},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I32, "I32", 4},         {DType::U32, "U32", 4},
    {DType::F32, "F32", 4},   {DType::F64, "F64", 8},         {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},   {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};

const DTypeEntry& entry_for(DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return e;
  }
  throw ValueError("unknown safetensors dtype enum value " +
                   std::to_string(static_cast<int>(dtype)));
}

// A non-negative JSON integer that fits in int64, or nothing.
bool as_index(const Json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < 0) return false;
    *out = static_cast<uint64_t>(i);
  } else {
    return false;
  }
  return *out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

// Dumps a header value for an error message without repeating megabytes of it.
std::string excerpt(const Json& v) {
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Tensor names are untrusted: JSON-escape them so a NUL or newline cannot cut or forge a message.
std::string shown(const std::string& name) {
  const std::string d = Json(name).dump(-1, ' ', false, Json::error_handler_t::replace);
  return "'" + d.substr(1, d.size() - 2) + "'";
}

}  // namespace

std::size_t dtype_size(DType dtype) { return entry_for(dtype).size; }

const char* dtype_name(DType dtype) { return entry_for(dtype).name; }

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  // O_NONBLOCK: opening a FIFO must not wait for a writer (fstat below refuses it).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    throw OSError("cannot open safetensors file '" + path + "': " + std::strerror(errno));
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw OSError("cannot read safetensors file '" + path + "': not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    file->fail("file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  // MAP_PRIVATE + PROT_WRITE: see data(). Pages stay clean (shared with the page cache) until
  // something actually writes to them.
  void* mapping = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (mapping == MAP_FAILED) {
    throw OSError("cannot memory-map safetensors file '" + path + "': " + std::strerror(map_errno));
  }
  file->mapping_ = mapping;
  file->mapping_size_ = size;
  file->bytes_ = static_cast<const uint8_t*>(mapping);
  file->size_ = size;
  file->parse();
  return file;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::from_bytes(std::string bytes,
                                                             std::string origin) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = std::move(origin);
  file->owned_ = std::move(bytes);
  file->bytes_ = reinterpret_cast<const uint8_t*>(file->owned_.data());
  file->size_ = file->owned_.size();
  file->parse();
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

void SafetensorsFile::fail(const std::string& problem) const {
  throw ValueError("invalid safetensors file '" + path_ + "': " + problem);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, const std::string& n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

const uint8_t* SafetensorsFile::data(const TensorInfo& info) const {
  // parse() proved this for its own entries; a TensorInfo from elsewhere must not read past us.
  if (info.begin > info.end || info.end > size_ - data_start_) {
    fail("tensor " + shown(info.name) + " byte range is outside the data section");
  }
  return bytes_ + data_start_ + info.begin;
}

void SafetensorsFile::parse() {
  if (size_ < 8) {
    fail("file is " + std::to_string(size_) + " bytes, shorter than the 8-byte header length");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes_[i];
  if (header_len > kMaxHeaderBytes) {
    fail("header length " + std::to_string(header_len) + " exceeds the " +
         std::to_string(kMaxHeaderBytes) + "-byte limit");
  }
  if (header_len > size_ - 8) {
    fail("header length " + std::to_string(header_len) + " is beyond the end of the file (" +
         std::to_string(size_ - 8) + " bytes after the length)");
  }
  data_start_ = 8 + header_len;
  const uint64_t data_size = size_ - data_start_;

  // nlohmann keeps the last of two equal keys; the callback sees every top-level key first.
  std::set<std::string> seen;
  std::string duplicate;
  const auto on_event = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::key && depth == 1 && duplicate.empty() &&
        !seen.insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  const char* text = reinterpret_cast<const char*>(bytes_ + 8);
  if (io::json_nests_deeper_than(text, text + header_len, io::kMaxJsonDepth)) {
    fail("header JSON is nested deeper than " + std::to_string(io::kMaxJsonDepth) + " levels");
  }
  Json header;
  try {
    header = Json::parse(text, text + header_len, on_event);
  } catch (const Json::exception& e) {
    fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail("header is not a JSON object");
  if (!duplicate.empty()) fail("tensor name " + shown(duplicate) + " appears twice in the header");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const Json& entry = it.value();
    if (name == "__metadata__") {
      if (entry.is_null()) continue;
      if (!entry.is_object()) fail("__metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          fail("__metadata__ value for " + shown(m.key()) +
               " is not a string: " + excerpt(m.value()));
        }
        metadata_.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    const std::string where = "tensor " + shown(name);
    if (!entry.is_object()) fail(where + " entry is not an object: " + excerpt(entry));

    TensorInfo info;
    info.name = name;
    const auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) fail(where + " has no dtype string");
    const std::string& dtype_str = dtype_it->get_ref<const std::string&>();
    const DTypeEntry* dtype = nullptr;
    for (const DTypeEntry& e : kDTypes) {
      if (dtype_str == e.name) dtype = &e;
    }
    if (dtype == nullptr) fail(where + " has unknown dtype " + excerpt(*dtype_it));
    info.dtype = dtype->dtype;

    const auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) {
      fail(where + " shape is not a list of non-negative integers");
    }
    // numel fits in uint64 and so does numel * 8: the byte count check below cannot overflow.
    uint64_t numel = 1;
    for (const Json& d : *shape_it) {
      uint64_t dim = 0;
      if (!as_index(d, &dim)) {
        fail(where + " shape is not a list of non-negative integers: " + excerpt(*shape_it));
      }
      if (dim != 0 && numel > (std::numeric_limits<uint64_t>::max() / 8) / dim) {
        // A zero anywhere still makes the tensor empty, but a header this large is malicious.
        fail(where + " shape " + excerpt(*shape_it) + " has too many elements");
      }
      numel *= dim;
      info.shape.push_back(static_cast<int64_t>(dim));
    }

    const auto offsets_it = entry.find("data_offsets");
    uint64_t begin = 0;
    uint64_t end = 0;
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !as_index((*offsets_it)[0], &begin) || !as_index((*offsets_it)[1], &end)) {
      fail(where + " data_offsets is not a pair of non-negative integers");
    }
    if (begin > end) {
      fail(where + " data_offsets " + excerpt(*offsets_it) + " has begin after end");
    }
    if (end > data_size) {
      fail(where + " data_offsets " + excerpt(*offsets_it) + " end beyond the " +
           std::to_string(data_size) + "-byte data section");
    }
    const uint64_t expected = numel * dtype->size;
    if (end - begin != expected) {
      fail(where + " holds " + std::to_string(end - begin) + " bytes but dtype " + dtype->name +
           " and shape " + excerpt(*shape_it) + " need " + std::to_string(expected));
    }
    info.begin = begin;
    info.end = end;
    tensors_.push_back(std::move(info));
  }

  // Two tensors sharing bytes would alias in memory; empty tensors own no bytes and cannot.
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : tensors_) {
    if (t.end > t.begin) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
  });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end) {
      fail("tensors " + shown(by_offset[i - 1]->name) + " and " + shown(by_offset[i]->name) +
           " overlap in the data section");
    }
  }
  // nlohmann's object is a std::map, so this is already sorted; sort anyway to keep the promise
  // independent of the JSON library's container choice.
  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
}

}  // namespace nd::io
