// libFuzzer harness for the CLIP tokenizer (csrc/tokenizers/clip_tokenizer.cpp), built by
// scripts/fuzz.sh. Two things per input:
//
// 1. Fuzzed text on a fixed tokenizer. A small in-memory vocabulary (all 256 byte-level symbols,
//    with and without "</w>", a few merged words, bos/eos, an SDXL-style "!" pad token, a
//    normalized single-word added token and a normalized non-ASCII one) encodes the prompt: it
//    goes through encode(), every padding / truncation mode of operator() and decode().
//
// 2. Fuzzed tokenizer files. An input made of sections
//        @@ vocab.json\n<bytes>\n@@ merges.txt\n<bytes>\n@@ prompt\n<bytes>...
//    (names: vocab.json, merges.txt, tokenizer.json, tokenizer_config.json,
//    special_tokens_map.json, prompt) is written into one private temporary folder, loaded with
//    CLIPTokenizer::from_folder, and the prompts are encoded with what loaded. The folder lives
//    under $ND_FUZZ_TMPDIR (else $TMPDIR, else /tmp), is emptied after every input and removed at
//    exit. An input without a leading "@@ " header is a prompt for (1) alone.
//
// Oracles: every id maps back to a token (id_to_token); input_ids and attention_mask rows have the same length, and
// padding to max_length with truncation gives exactly max_length; encoding the same text twice
// (the second time from the word cache) gives the same ids.
//
// nd::Error is a clean rejection. Another std::exception is tolerated unless ND_FUZZ_STRICT=1.
// Padding to a file's model_max_length is capped (kMaxPadTo): a huge model_max_length is a
// resource question for the pipelines (see tests/fuzz/README.md), not a parser crash.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "fuzz_common.h"
#include "tokenizers/clip_tokenizer.h"

namespace {

using nd::fuzz::guarded;
using nd::fuzz::strict;

namespace fs = std::filesystem;
using nd::AddedToken;
using nd::CLIPBatchEncoding;
using nd::CLIPSpecialTokens;
using nd::CLIPTokenizer;
using nd::PaddingStrategy;

// The largest model_max_length the harness pads to (CLIP uses 77; T5-style configs 512).
constexpr int64_t kMaxPadTo = 4096;
// Prompts beyond this are cut: long words are still covered, and runs stay fast.
constexpr std::size_t kMaxPromptBytes = 2048;

// ---- the fixed tokenizer -----------------------------------------------------------------------

void append_utf8(uint32_t c, std::string& out) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// GPT-2's bytes_to_unicode, as the tokenizer's byte-level table builds it.
std::vector<std::string> byte_symbols() {
  std::vector<std::string> out(256);
  int next = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    append_utf8(printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + next++),
                out[b]);
  }
  return out;
}

const CLIPTokenizer& fixed_tokenizer() {
  static const CLIPTokenizer tok = [] {
    CLIPTokenizer::Vocab vocab;
    auto add = [&](const std::string& s) { vocab.emplace(s, static_cast<int64_t>(vocab.size())); };
    const std::vector<std::string> sym = byte_symbols();
    for (const std::string& s : sym) add(s);
    for (const std::string& s : sym) add(s + "</w>");
    // Merges that build whole words left to right: "h e" -> "he", "he l" -> "hel", ...
    CLIPTokenizer::Merges merges;
    for (const char* word : {"hello", "world", "photo", "of", "a", "cat", "the", "dog", "ab", "aa"}) {
      const std::string w = word;
      std::string acc(1, w[0]);
      for (std::size_t i = 1; i < w.size(); ++i) {
        std::string right(1, w[i]);
        if (i + 1 == w.size()) right += "</w>";
        merges.emplace_back(acc, right);
        acc += right;
        if (!vocab.count(acc)) add(acc);
      }
    }
    // A repeated pair (last rank wins) and a merge chain over "</w>" pieces.
    merges.emplace_back("a", "a</w>");
    add("<|startoftext|>");
    add("<|endoftext|>");
    CLIPSpecialTokens specials;
    specials.pad_token = AddedToken{"!"};
    std::vector<AddedToken> decoder = {
        {"<|startoftext|>", true, false, false, false, false},
        {"<|endoftext|>", true, false, false, false, false},
        {"DoG", false, true, true, false, false},                    // normalized, single_word
        {"\xC3\x85ngstr\xC3\xB6m", false, true, false, false, false},  // NFC + lowercase
        {"<tag>", true, false, true, false, false},
    };
    return CLIPTokenizer(std::move(vocab), merges, specials, 77, decoder, "<fuzz vocabulary>");
  }();
  return tok;
}

// ---- checks ------------------------------------------------------------------------------------

void check_ids(const CLIPTokenizer& tok, const std::vector<int64_t>& ids) {
  // Every id the tokenizer hands out is a vocabulary entry or an added token: it maps back.
  for (int64_t id : ids) {
    ND_FUZZ_CHECK(id >= 0);
    ND_FUZZ_CHECK(tok.id_to_token(id).has_value());
  }
}

void check_batch(const CLIPBatchEncoding& enc, std::size_t texts) {
  ND_FUZZ_CHECK(enc.input_ids.size() == texts);
  ND_FUZZ_CHECK(enc.attention_mask.size() == texts);
  for (std::size_t i = 0; i < texts; ++i) {
    ND_FUZZ_CHECK(enc.input_ids[i].size() == enc.attention_mask[i].size());
    for (int64_t m : enc.attention_mask[i]) ND_FUZZ_CHECK(m == 0 || m == 1);
  }
}

void exercise(const CLIPTokenizer& tok, const std::vector<std::string>& prompts, std::size_t pick) {
  for (const std::string& p : prompts) {
    guarded("encode", [&] {
      const std::vector<int64_t> ids = tok.encode(p);
      check_ids(tok, ids);
      ND_FUZZ_CHECK(tok.encode(p) == ids);  // the second time comes from the word cache
      volatile std::size_t sink = tok.decode(ids).size() + tok.decode(ids, true).size();
      (void)sink;
    });
  }
  const std::optional<int64_t> model_max = tok.model_max_length();
  const bool may_pad_to_model_max = !model_max || *model_max <= kMaxPadTo;
  struct Mode {
    PaddingStrategy padding;
    std::optional<bool> truncation;
    std::optional<int64_t> max_length;
    bool add_special_tokens;
  };
  // The first two run on every input (the second is the pipelines' call); one of the others, picked
  // by the input's length, keeps each input cheap while every mode still gets its share.
  const Mode modes[] = {
      {PaddingStrategy::kDoNotPad, std::nullopt, std::nullopt, true},
      {PaddingStrategy::kMaxLength, true, 77, true},
      {PaddingStrategy::kMaxLength, true, std::nullopt, true},  // pad to model_max_length
      {PaddingStrategy::kLongest, true, 8, true},
      {PaddingStrategy::kLongest, std::nullopt, std::nullopt, false},
      {PaddingStrategy::kDoNotPad, true, 1, true},  // below the special tokens: left whole
      {PaddingStrategy::kDoNotPad, std::nullopt, 3, true},
      {PaddingStrategy::kMaxLength, false, 0, false},
  };
  constexpr std::size_t kModes = sizeof(modes) / sizeof(modes[0]);
  for (std::size_t k : {std::size_t{0}, std::size_t{1}, 2 + pick % (kModes - 2)}) {
    const Mode& m = modes[k];
    if (m.padding == PaddingStrategy::kMaxLength && !m.max_length && !may_pad_to_model_max) continue;
    guarded("operator()", [&] {
      const CLIPBatchEncoding enc = tok(prompts, m.padding, m.truncation, m.max_length,
                                        m.add_special_tokens);
      check_batch(enc, prompts.size());
      for (const auto& row : enc.input_ids) check_ids(tok, row);
      if (m.padding == PaddingStrategy::kMaxLength && m.truncation == true && m.max_length &&
          *m.max_length >= 2) {
        for (const auto& row : enc.input_ids) {
          ND_FUZZ_CHECK(static_cast<int64_t>(row.size()) == *m.max_length);
        }
      }
    });
  }
  guarded("lookups", [&] {
    volatile std::size_t sink = 0;
    for (const auto& id : {tok.bos_token_id(), tok.eos_token_id(), tok.pad_token_id(),
                           tok.unk_token_id()}) {
      if (id) sink = sink + tok.id_to_token(*id).value_or("").size();
    }
    for (const std::string& p : prompts) sink = sink + tok.token_to_id(p).value_or(0);
    sink = sink + static_cast<std::size_t>(tok.vocab_size() + tok.size());
    sink = sink + tok.decode({-1, 0, 1, tok.size(), INT64_MAX}).size();
    (void)sink;
  });
}

// ---- sections and the temporary folder ---------------------------------------------------------

constexpr const char* kFileNames[] = {"vocab.json", "merges.txt", "tokenizer.json",
                                      "tokenizer_config.json", "special_tokens_map.json"};

struct Sections {
  std::vector<std::pair<std::string, std::string>> files;
  std::vector<std::string> prompts;
};

// "@@ name\n" starts a section; its bytes run up to the "\n" before the next header line.
std::optional<Sections> split_sections(const std::string& in) {
  if (in.rfind("@@ ", 0) != 0) return std::nullopt;
  Sections out;
  std::size_t pos = 0;
  while (pos < in.size()) {
    const std::size_t name_end = in.find('\n', pos);
    const std::string name =
        in.substr(pos + 3, (name_end == std::string::npos ? in.size() : name_end) - pos - 3);
    const std::size_t body = name_end == std::string::npos ? in.size() : name_end + 1;
    std::size_t next = in.find("\n@@ ", body > 0 ? body - 1 : 0);
    const std::size_t body_end = next == std::string::npos ? in.size() : next;
    std::string content = body <= body_end ? in.substr(body, body_end - body) : std::string();
    if (name == "prompt") {
      if (content.size() > kMaxPromptBytes) content.resize(kMaxPromptBytes);
      if (out.prompts.size() < 4) out.prompts.push_back(std::move(content));
    } else {
      for (const char* f : kFileNames) {
        if (name == f) out.files.emplace_back(name, std::move(content));
      }
    }
    pos = next == std::string::npos ? in.size() : next + 1;
  }
  return out;
}

// One private folder per process, emptied after every input and removed at exit.
class ScratchDir {
 public:
  static ScratchDir& get() {
    static ScratchDir dir;
    return dir;
  }
  const std::string& path() const { return path_; }
  void clear() const {
    for (const char* f : kFileNames) {
      std::error_code ec;
      fs::remove(fs::path(path_) / f, ec);
    }
  }
  ~ScratchDir() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }

 private:
  ScratchDir() {
    const char* base = std::getenv("ND_FUZZ_TMPDIR");
    if (base == nullptr || *base == '\0') base = std::getenv("TMPDIR");
    if (base == nullptr || *base == '\0') base = "/tmp";
    std::error_code ec;
    fs::create_directories(base, ec);
    std::string tmpl = std::string(base) + "/nd_fuzz_tokenizer.XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::fprintf(stderr, "fuzz_clip_tokenizer: cannot create a folder under %s\n", base);
      std::abort();
    }
    path_ = tmpl;
  }
  std::string path_;
};

// Empties the folder on every way out of an input, exceptions included.
struct ClearOnExit {
  const ScratchDir& dir;
  ~ClearOnExit() { dir.clear(); }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)fixed_tokenizer();
  (void)ScratchDir::get();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::optional<Sections> sections = split_sections(input);

  std::vector<std::string> prompts;
  if (sections) {
    prompts = sections->prompts;
  } else {
    prompts.push_back(input.substr(0, kMaxPromptBytes));
  }
  if (prompts.empty()) prompts.push_back("a photo of a cat");
  exercise(fixed_tokenizer(), prompts, size);

  if (!sections || sections->files.empty()) return 0;
  const ScratchDir& dir = ScratchDir::get();
  const ClearOnExit clear{dir};
  dir.clear();
  for (const auto& [name, content] : sections->files) {
    std::ofstream out(fs::path(dir.path()) / name, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
  }
  guarded("from_folder", [&] {
    const CLIPTokenizer tok = CLIPTokenizer::from_folder(dir.path());
    exercise(tok, prompts, size);
  });
  return 0;
}
