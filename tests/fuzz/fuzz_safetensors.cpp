// libFuzzer harness for the safetensors parser (csrc/io/safetensors.cpp), built by scripts/fuzz.sh.
//
// Each input is a whole file. It is parsed twice: in memory (SafetensorsFile::from_bytes) and
// through the memory-mapped path (SafetensorsFile::open) on an anonymous memfd, so that no file is
// ever written to disk. Both must agree. Whatever parses must keep every promise of safetensors.h:
// names sorted and unique, byte ranges inside the data section and of the size dtype x shape
// needs, no two tensors sharing bytes, data() refusing a range from elsewhere. Every tensor byte is
// read, so an unchecked offset trips ASan (from_bytes) or faults (mmap).
//
// nd::Error is a clean rejection. Another std::exception is tolerated unless ND_FUZZ_STRICT=1.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"
#include "fuzz_common.h"
#include "io/safetensors.h"

namespace {

using nd::fuzz::strict;

using nd::io::SafetensorsFile;
using nd::io::TensorInfo;

enum class Outcome { kParsed, kNdError, kOSError, kOtherError };

// A file descriptor that is closed on every path out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

template <typename F>
Outcome attempt(const char* what, std::shared_ptr<SafetensorsFile>* out, F&& f) {
  try {
    *out = f();
    return Outcome::kParsed;
  } catch (const nd::OSError&) {
    return Outcome::kOSError;
  } catch (const nd::Error&) {
    return Outcome::kNdError;
  } catch (const std::exception& e) {
    if (strict()) {
      std::fprintf(stderr, "ND_FUZZ_STRICT: %s threw a non-nd exception: %s\n", what, e.what());
      std::abort();
    }
    return Outcome::kOtherError;
  }
}

uint64_t header_length(const uint8_t* data, std::size_t size) {
  uint64_t n = 0;
  for (int i = 7; i >= 0 && size >= 8; --i) n = (n << 8) | data[i];
  return n;
}

void check_file(const SafetensorsFile& file, const uint8_t* data, std::size_t size) {
  ND_FUZZ_CHECK(size >= 8);
  const uint64_t header_len = header_length(data, size);
  ND_FUZZ_CHECK(header_len <= SafetensorsFile::kMaxHeaderBytes);
  ND_FUZZ_CHECK(header_len <= size - 8);
  const uint64_t data_size = size - 8 - header_len;

  const std::vector<TensorInfo>& tensors = file.tensors();
  volatile uint64_t sum = 0;
  const uint8_t* first = nullptr;
  uint64_t first_begin = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    if (i > 0) ND_FUZZ_CHECK(tensors[i - 1].name < t.name);
    ND_FUZZ_CHECK(t.name != "__metadata__");
    ND_FUZZ_CHECK(file.find(t.name) == &t);
    ND_FUZZ_CHECK(t.begin <= t.end && t.end <= data_size);
    ND_FUZZ_CHECK(std::string(nd::io::dtype_name(t.dtype)).size() > 0);
    // parse() bounds numel * 8 by 2^64, so this product cannot wrap.
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      ND_FUZZ_CHECK(d >= 0);
      numel *= static_cast<uint64_t>(d);
    }
    ND_FUZZ_CHECK(t.end - t.begin == numel * nd::io::dtype_size(t.dtype));
    const uint8_t* p = file.data(t);
    if (first == nullptr) {
      first = p;
      first_begin = t.begin;
    }
    ND_FUZZ_CHECK(p - first == static_cast<std::ptrdiff_t>(t.begin) -
                                   static_cast<std::ptrdiff_t>(first_begin));
    // The same bytes as the input at 8 + header + begin.
    for (uint64_t k = 0; k < t.end - t.begin; ++k) {
      ND_FUZZ_CHECK(p[k] == data[8 + header_len + t.begin + k]);
      sum = sum + p[k];
    }
  }
  // Non-empty tensors never overlap.
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    for (std::size_t j = i + 1; j < tensors.size() && tensors.size() <= 256; ++j) {
      const TensorInfo& a = tensors[i];
      const TensorInfo& b = tensors[j];
      if (a.end > a.begin && b.end > b.begin) {
        ND_FUZZ_CHECK(a.end <= b.begin || b.end <= a.begin);
      }
    }
  }
  ND_FUZZ_CHECK(file.find("\x01no such tensor\x02") == nullptr);
  // A TensorInfo that did not come from this file must be refused, not dereferenced.
  for (const auto& [begin, end] :
       {std::pair<uint64_t, uint64_t>{0, std::numeric_limits<uint64_t>::max()},
        {data_size, data_size + 1},
        {5, 4},
        {std::numeric_limits<uint64_t>::max(), std::numeric_limits<uint64_t>::max()}}) {
    TensorInfo forged;
    forged.name = "forged";
    forged.begin = begin;
    forged.end = end;
    bool refused = false;
    try {
      (void)file.data(forged);
    } catch (const nd::ValueError&) {
      refused = true;
    }
    ND_FUZZ_CHECK(refused);
  }
  for (const auto& [k, v] : file.metadata()) sum = sum + k.size() + v.size();
  (void)sum;
}

bool same_tensors(const SafetensorsFile& a, const SafetensorsFile& b) {
  if (a.tensors().size() != b.tensors().size() || a.metadata() != b.metadata()) return false;
  for (std::size_t i = 0; i < a.tensors().size(); ++i) {
    const TensorInfo& x = a.tensors()[i];
    const TensorInfo& y = b.tensors()[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.begin != y.begin ||
        x.end != y.end) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::shared_ptr<SafetensorsFile> in_memory;
  const Outcome a = attempt("from_bytes", &in_memory, [&] {
    return SafetensorsFile::from_bytes(std::string(reinterpret_cast<const char*>(data), size),
                                       "fuzz.safetensors");
  });
  if (a == Outcome::kParsed) check_file(*in_memory, data, size);

  // The mmap path, through /proc/self/fd of a memfd: a regular file that lives only in memory.
  Fd memfd;
  memfd.fd = ::memfd_create("nd_fuzz_safetensors", MFD_CLOEXEC);
  if (memfd.fd < 0) return 0;  // no memfd support: the in-memory check above still ran
  std::size_t written = 0;
  while (written < size) {
    const ssize_t n = ::write(memfd.fd, data + written, size - written);
    if (n <= 0) return 0;
    written += static_cast<std::size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(memfd.fd);
  std::shared_ptr<SafetensorsFile> mapped;
  const Outcome b = attempt("open", &mapped, [&] { return SafetensorsFile::open(path); });
  if (b == Outcome::kParsed) check_file(*mapped, data, size);
  // OSError: the environment (no /proc, mmap refused), not the content; nothing to compare.
  if (b == Outcome::kOSError) return 0;
  // The two entry points share parse(): they must accept and reject the same files, alike.
  ND_FUZZ_CHECK(a == b);
  if (a == Outcome::kParsed) ND_FUZZ_CHECK(same_tensors(*in_memory, *mapped));
  return 0;
}
