#include "tokenizers/clip_tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <queue>
#include <sstream>

#include "core/errors.h"
#include "io/json_config.h"

namespace nd {

namespace {

namespace fs = std::filesystem;
using io::Json;

constexpr const char* kEndOfWordSuffix = "</w>";
// tokenizers' BPE cache holds 10k words; past that, words are merged afresh every time.
constexpr std::size_t kWordCacheCapacity = 10000;
// tokenizers does not cache words this long (bpe/model.rs MAX_LENGTH).
constexpr std::size_t kMaxCachedWordBytes = 256;
// Merges are keyed by two ids packed into 64 bits.
constexpr int64_t kMaxTokenId = std::numeric_limits<int32_t>::max();
// transformers treats model_max_length above LARGE_INTEGER (1e20) as "no limit"; every value that
// fits int64 is below it, so only non-integer or out-of-range JSON numbers mean "no limit".

// ---- Unicode helpers ---------------------------------------------------------------------------

// Unicode White_Space, which is what `\s` means to the Oniguruma regexes of `tokenizers` (U+001C..
// U+001F and U+180E are not spaces there, unlike Python's str.isspace).
bool is_regex_space(int32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Python's str.isspace, used by the final .strip() of CLIPTokenizer's decode.
bool is_python_space(int32_t c) { return is_regex_space(c) || (c >= 0x1C && c <= 0x1F); }

bool is_letter(int32_t c) {
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return true;
    default:
      return false;
  }
}

bool is_number(int32_t c) {
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

// Rust's char::is_alphanumeric, which decides tokenizers' single_word boundaries.
bool is_word_char(int32_t c) { return is_letter(c) || is_number(c); }

std::vector<int32_t> decode_utf8(const std::string& s) {
  std::vector<int32_t> out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t pos = 0;
  const auto len = static_cast<utf8proc_ssize_t>(s.size());
  while (pos < len) {
    utf8proc_int32_t c;
    const utf8proc_ssize_t n = utf8proc_iterate(p + pos, len - pos, &c);
    if (n <= 0) throw ValueError("invalid UTF-8 in text at byte " + std::to_string(pos));
    out.push_back(c);
    pos += n;
  }
  return out;
}

// The code point that ends just before byte `i` / starts at byte `i` of valid UTF-8, if any: a
// word-boundary test without decoding everything before or after.
std::optional<int32_t> codepoint_before(const std::string& s, std::size_t i) {
  if (i == 0) return std::nullopt;
  std::size_t begin = i - 1;
  while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80) --begin;
  return decode_utf8(s.substr(begin, i - begin)).front();
}

std::optional<int32_t> codepoint_at(const std::string& s, std::size_t i) {
  if (i >= s.size()) return std::nullopt;
  std::size_t end = i + 1;
  while (end < s.size() && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) ++end;
  return decode_utf8(s.substr(i, end - i)).front();
}

void append_utf8(int32_t c, std::string& out) {
  utf8proc_uint8_t buf[4];
  const utf8proc_ssize_t n = utf8proc_encode_char(c, buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
}

// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD.
std::string utf8_lossy(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = b[i];
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    std::size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    std::size_t j = i + 1;
    std::size_t got = 0;
    while (need > 0 && got < need && j < n) {
      const unsigned char cc = b[j];
      const bool ok = got == 0 ? (cc >= lo && cc <= hi) : (cc >= 0x80 && cc <= 0xBF);
      if (!ok) break;
      ++got;
      ++j;
    }
    if (need > 0 && got == need) {
      out.append(bytes, i, j - i);
    } else {
      out += "\xEF\xBF\xBD";
    }
    i = j;
  }
  return out;
}

std::string nfc(const std::string& s) {
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                   static_cast<utf8proc_ssize_t>(s.size()), &dst,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) {
    std::free(dst);
    throw ValueError(std::string("cannot NFC-normalize text: ") + utf8proc_errmsg(n));
  }
  std::string out(reinterpret_cast<const char*>(dst), static_cast<std::size_t>(n));
  std::free(dst);
  return out;
}

// CLIPTokenizer's normalizer: NFC, Replace(`\s+`, " "), Lowercase.
std::string normalize(const std::string& raw) {
  const std::vector<int32_t> cps = decode_utf8(nfc(raw));
  std::string out;
  out.reserve(raw.size());
  bool in_space = false;
  for (int32_t c : cps) {
    if (is_regex_space(c)) {
      if (!in_space) out.push_back(' ');
      in_space = true;
      continue;
    }
    in_space = false;
    // Rust's char::to_lowercase applies SpecialCasing's one unconditional multi-char lowercase;
    // utf8proc_tolower only knows the simple mapping (U+0130 -> 'i').
    if (c == 0x130) {
      out += "i\xCC\x87";
      continue;
    }
    append_utf8(utf8proc_tolower(c), out);
  }
  return out;
}

// CLIP's split regex, `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
// [^\s\p{L}\p{N}]+`, keeping the matches, followed by ByteLevel's GPT-2 regex (use_regex=True).
// Alternatives are tried in order at the start of each match, so a special-token literal that was
// not taken as an added token (e.g. "<|STARTOFTEXT|>" lowercased, when the token is not
// `normalized`) is one piece, which GPT-2's regex then cuts into "<|", letters, "|>". On every
// other piece GPT-2's regex is a no-op: CLIP's pieces hold no spaces and never mix classes.
std::vector<std::string> pre_tokenize(const std::string& text) {
  static const char* const kLiterals[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t",
                                          "'re", "'ve", "'m", "'ll", "'d"};
  std::vector<std::string> words;
  const std::vector<int32_t> cps = decode_utf8(text);
  const std::size_t n = cps.size();
  std::size_t i = 0;
  auto emit = [&](std::size_t begin, std::size_t end) {
    std::string w;
    for (std::size_t k = begin; k < end; ++k) append_utf8(cps[k], w);
    words.push_back(std::move(w));
  };
  while (i < n) {
    const int32_t c = cps[i];
    if (c == '\'' || c == '<') {
      bool matched = false;
      for (const char* con : kLiterals) {
        const std::size_t len = std::char_traits<char>::length(con);
        if (i + len > n) continue;
        bool eq = true;
        for (std::size_t k = 0; k < len && eq; ++k) eq = cps[i + k] == con[k];
        if (eq) {
          if (c == '<') {
            emit(i, i + 2);
            emit(i + 2, i + len - 2);
            emit(i + len - 2, i + len);
          } else {
            emit(i, i + len);
          }
          i += len;
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    if (is_letter(c)) {
      std::size_t j = i + 1;
      while (j < n && is_letter(cps[j])) ++j;
      emit(i, j);
      i = j;
    } else if (is_number(c)) {
      emit(i, i + 1);
      ++i;
    } else if (!is_regex_space(c)) {
      std::size_t j = i + 1;
      while (j < n && !is_regex_space(cps[j]) && !is_letter(cps[j]) && !is_number(cps[j])) ++j;
      emit(i, j);
      i = j;
    } else {
      ++i;
    }
  }
  return words;
}

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards.
struct ByteLevelTable {
  std::string byte_to_char[256];
  std::unordered_map<int32_t, unsigned char> char_to_byte;
  ByteLevelTable() {
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const int32_t cp = printable ? b : 256 + next++;
      append_utf8(cp, byte_to_char[b]);
      char_to_byte[cp] = static_cast<unsigned char>(b);
    }
  }
};

const ByteLevelTable& byte_level() {
  static const ByteLevelTable table;
  return table;
}

// ---- file parsing ------------------------------------------------------------------------------

std::string read_text_file(const std::string& path) {
  return io::read_regular_file(path, std::size_t{256} << 20, "tokenizer file");
}

CLIPTokenizer::Vocab parse_vocab(const Json& j, const std::string& origin) {
  if (!j.is_object()) throw ValueError("vocabulary in " + origin + " must be a JSON object");
  CLIPTokenizer::Vocab vocab;
  vocab.reserve(j.size());
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_number_integer()) {
      throw ValueError("vocabulary entry '" + it.key() + "' in " + origin +
                       " must map to an integer id");
    }
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > kMaxTokenId) {
      throw ValueError("vocabulary entry '" + it.key() + "' in " + origin + " has id " +
                       std::to_string(id) + " outside [0, 2^31)");
    }
    vocab[it.key()] = id;
  }
  return vocab;
}

// merges.txt as tokenizers reads it: "#version" lines skipped, every other line exactly "a b".
CLIPTokenizer::Merges parse_merges_txt(const std::string& path) {
  const std::string text = read_text_file(path);
  CLIPTokenizer::Merges merges;
  std::istringstream in(text);
  std::string line;
  std::size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("#version", 0) == 0) continue;
    const std::size_t sp = line.find(' ');
    if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos || sp == 0 ||
        sp + 1 == line.size()) {
      throw ValueError("invalid merge at line " + std::to_string(line_no) + " of '" + path +
                       "': expected two space-separated tokens");
    }
    merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
  }
  return merges;
}

CLIPTokenizer::Merges parse_merges_json(const Json& j, const std::string& origin) {
  if (!j.is_array()) throw ValueError("model.merges in " + origin + " must be a list");
  CLIPTokenizer::Merges merges;
  merges.reserve(j.size());
  for (std::size_t i = 0; i < j.size(); ++i) {
    const Json& m = j[i];
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const std::size_t sp = s.find(' ');
      if (sp != std::string::npos && sp > 0 && sp + 1 < s.size() &&
          s.find(' ', sp + 1) == std::string::npos) {
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
        continue;
      }
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      continue;
    }
    throw ValueError("invalid merge #" + std::to_string(i) + " in " + origin +
                     ": expected \"a b\" or [\"a\", \"b\"]");
  }
  return merges;
}

bool get_flag(const Json& obj, const char* key, bool fallback, const std::string& origin) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    throw ValueError(std::string("flag '") + key + "' of an added token in " + origin +
                     " must be a boolean");
  }
  return it->get<bool>();
}

// An AddedToken serialized as a string or as {"content": ..., flags}. `special` is what
// transformers passes when it builds the token (tokenizers then defaults normalized = !special).
AddedToken parse_added_token(const Json& j, bool special, const std::string& what,
                             const std::string& origin) {
  AddedToken t;
  if (j.is_string()) {
    t.content = j.get<std::string>();
    t.special = true;
    t.normalized = false;
    return t;
  }
  if (!j.is_object() || !j.contains("content") || !j["content"].is_string()) {
    throw ValueError(what + " in " + origin +
                     " must be a string or an object with a string \"content\"");
  }
  t.content = j["content"].get<std::string>();
  t.special = get_flag(j, "special", special, origin);
  t.normalized = get_flag(j, "normalized", !t.special, origin);
  t.single_word = get_flag(j, "single_word", false, origin);
  t.lstrip = get_flag(j, "lstrip", false, origin);
  t.rstrip = get_flag(j, "rstrip", false, origin);
  return t;
}

std::optional<Json> read_optional_json_object(const fs::path& path) {
  if (!fs::exists(path)) return std::nullopt;
  Json j = io::read_json_file(path.string());
  if (!j.is_object()) {
    throw ValueError("expected a JSON object at the top of '" + path.string() + "'");
  }
  return j;
}

bool same_token(const AddedToken& a, const AddedToken& b) {
  return a.content == b.content && a.special == b.special && a.normalized == b.normalized &&
         a.single_word == b.single_word && a.lstrip == b.lstrip && a.rstrip == b.rstrip;
}

}  // namespace

// ---- construction ------------------------------------------------------------------------------

struct CLIPTokenizer::WordCache {
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int64_t>> words;
};

CLIPTokenizer::CLIPTokenizer(Vocab vocab, const Merges& merges, CLIPSpecialTokens special_tokens,
                             std::optional<int64_t> model_max_length,
                             std::vector<AddedToken> added_tokens_decoder, std::string origin)
    : vocab_(std::move(vocab)),
      special_tokens_(std::move(special_tokens)),
      origin_(std::move(origin)),
      cache_(std::make_unique<WordCache>()) {
  set_model_max_length(model_max_length);
  id_to_vocab_.reserve(vocab_.size());
  for (const auto& [token, id] : vocab_) {
    if (id < 0 || id > kMaxTokenId) {
      throw ValueError("token '" + token + "' in " + origin_ + " has id " + std::to_string(id) +
                       " outside [0, 2^31)");
    }
    id_to_vocab_.emplace(id, token);
  }
  merges_.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = vocab_.find(a);
    auto ib = vocab_.find(b);
    auto im = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end() || im == vocab_.end()) {
      const std::string& missing = ia == vocab_.end() ? a : ib == vocab_.end() ? b : a + b;
      throw ValueError("merge #" + std::to_string(rank) + " \"" + a + " " + b + "\" in " + origin_ +
                       " uses '" + missing + "', which is not in the vocabulary");
    }
    const uint64_t key =
        (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint64_t>(ib->second);
    // A repeated pair takes its last rank: tokenizers collects the merges into a hash map.
    merges_[key] = std::make_pair(static_cast<int64_t>(rank), im->second);
  }
  // transformers adds the saved added tokens, then each named special token not already among
  // them; tokenizers lets a later entry with the same content replace the earlier one's flags.
  std::vector<AddedToken> to_add = std::move(added_tokens_decoder);
  const std::size_t n_decoder = to_add.size();
  auto queue = [&](const std::optional<AddedToken>& t) {
    if (!t) return;
    for (std::size_t i = 0; i < n_decoder; ++i) {
      if (to_add[i].content == t->content) return;
    }
    for (std::size_t i = n_decoder; i < to_add.size(); ++i) {
      if (same_token(to_add[i], *t)) return;
    }
    AddedToken named = *t;
    named.special = true;
    to_add.push_back(named);
  };
  queue(special_tokens_.bos_token);
  queue(special_tokens_.eos_token);
  queue(special_tokens_.unk_token);
  queue(special_tokens_.pad_token);
  for (const AddedToken& t : special_tokens_.extra_special_tokens) queue(t);
  for (const AddedToken& t : to_add) add_token(t);
}

CLIPTokenizer::CLIPTokenizer(CLIPTokenizer&&) noexcept = default;
CLIPTokenizer& CLIPTokenizer::operator=(CLIPTokenizer&&) noexcept = default;
CLIPTokenizer::~CLIPTokenizer() = default;

void CLIPTokenizer::add_token(const AddedToken& token) {
  // tokenizers skips empty added tokens silently.
  if (token.content.empty()) return;
  auto existing = added_index_.find(token.content);
  if (existing != added_index_.end()) {
    added_[existing->second].token = token;
    return;
  }
  int64_t id;
  auto in_vocab = vocab_.find(token.content);
  if (in_vocab != vocab_.end()) {
    id = in_vocab->second;
  } else {
    // tokenizers appends new tokens after the model vocabulary and after earlier added tokens.
    id = static_cast<int64_t>(vocab_.size());
    for (const Added& a : added_) id = std::max(id, a.id + 1);
  }
  added_index_.emplace(token.content, added_.size());
  added_.push_back({token, id});
}

void CLIPTokenizer::set_model_max_length(std::optional<int64_t> value) {
  if (value && *value < 0) {
    throw ValueError("model_max_length must be non-negative, got " + std::to_string(*value));
  }
  model_max_length_ = value;
}

CLIPTokenizer CLIPTokenizer::from_folder(const std::string& dir) {
  const fs::path root(dir);
  if (!fs::is_directory(root)) throw OSError("tokenizer folder '" + dir + "' does not exist");

  const std::optional<Json> config = read_optional_json_object(root / "tokenizer_config.json");
  const std::string config_origin = (root / "tokenizer_config.json").string();
  const fs::path tokenizer_json_path = root / "tokenizer.json";
  const bool has_tokenizer_json = fs::exists(tokenizer_json_path);

  // 1. Vocabulary and merges.
  Vocab vocab;
  Merges merges;
  std::optional<Json> tokenizer_json;
  std::string model_origin;
  if (has_tokenizer_json) {
    tokenizer_json = read_optional_json_object(tokenizer_json_path);
    model_origin = tokenizer_json_path.string();
    const Json& tj = *tokenizer_json;
    if (!tj.contains("model") || !tj["model"].is_object()) {
      throw ValueError("missing \"model\" object in '" + model_origin + "'");
    }
    const Json& model = tj["model"];
    if (model.contains("type") && model["type"] != "BPE") {
      throw ValueError("CLIPTokenizer needs a BPE model, but '" + model_origin + "' has type " +
                       model["type"].dump());
    }
    if (!model.contains("vocab")) throw ValueError("missing model.vocab in '" + model_origin + "'");
    vocab = parse_vocab(model["vocab"], "'" + model_origin + "'");
    if (model.contains("merges")) {
      merges = parse_merges_json(model["merges"], "'" + model_origin + "'");
    }
  } else {
    const fs::path vocab_path = root / "vocab.json";
    const fs::path merges_path = root / "merges.txt";
    if (!fs::exists(vocab_path) || !fs::exists(merges_path)) {
      throw OSError("tokenizer folder '" + dir +
                    "' has neither tokenizer.json nor vocab.json and merges.txt");
    }
    vocab = parse_vocab(io::read_json_file(vocab_path.string()), "'" + vocab_path.string() + "'");
    merges = parse_merges_txt(merges_path.string());
    model_origin = vocab_path.string() + "' and '" + merges_path.string();
  }

  // 2. Special tokens, with transformers' precedence: tokenizer_config.json, overridden by
  // special_tokens_map.json unless the config carries added_tokens_decoder.
  Json named = Json::object();
  static const char* const kNamedKeys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                           "pad_token", "cls_token", "mask_token"};
  if (config) {
    for (const char* key : kNamedKeys) {
      if (config->contains(key)) named[key] = (*config)[key];
    }
  }
  std::vector<AddedToken> added_tokens_decoder;
  std::map<std::string, AddedToken> added_by_content;
  const bool has_decoder = config && config->contains("added_tokens_decoder");
  if (has_decoder) {
    const Json& dec = (*config)["added_tokens_decoder"];
    if (!dec.is_object()) {
      throw ValueError("added_tokens_decoder in " + config_origin + " must be an object");
    }
    std::vector<std::pair<int64_t, AddedToken>> entries;
    for (auto it = dec.begin(); it != dec.end(); ++it) {
      int64_t idx;
      try {
        std::size_t used = 0;
        idx = std::stoll(it.key(), &used);
        if (used != it.key().size()) throw std::invalid_argument("trailing characters");
      } catch (const std::exception&) {
        throw ValueError("added_tokens_decoder key '" + it.key() + "' in " + config_origin +
                         " is not an integer id");
      }
      if (!it.value().is_object()) {
        throw ValueError("added_tokens_decoder entry " + it.key() + " in " + config_origin +
                         " must be an object");
      }
      entries.emplace_back(idx, parse_added_token(it.value(), false, "added token", config_origin));
    }
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [idx, t] : entries) {
      added_by_content[t.content] = t;
      added_tokens_decoder.push_back(t);
    }
  } else {
    const fs::path map_path = root / "special_tokens_map.json";
    if (const std::optional<Json> stm = read_optional_json_object(map_path)) {
      for (auto it = stm->begin(); it != stm->end(); ++it) {
        if (it.value().is_object() && it.key() != "additional_special_tokens" &&
            it.key() != "extra_special_tokens") {
          Json v = it.value();
          v["special"] = true;  // special_tokens_map.json entries are built with special=True
          named[it.key()] = v;
        } else {
          named[it.key()] = it.value();
        }
      }
    }
    if (tokenizer_json && tokenizer_json->contains("added_tokens")) {
      const Json& at = (*tokenizer_json)["added_tokens"];
      if (!at.is_array()) throw ValueError("added_tokens in '" + model_origin + "' must be a list");
      std::vector<std::pair<int64_t, AddedToken>> entries;
      for (const Json& e : at) {
        if (!e.is_object() || !e.contains("id") || !e["id"].is_number_integer()) {
          throw ValueError("every added_tokens entry in '" + model_origin +
                           "' needs an integer \"id\"");
        }
        entries.emplace_back(e["id"].get<int64_t>(),
                             parse_added_token(e, false, "added token", model_origin));
      }
      std::stable_sort(entries.begin(), entries.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      for (auto& [idx, t] : entries) {
        added_by_content[t.content] = t;
        added_tokens_decoder.push_back(t);
      }
    }
  }

  CLIPSpecialTokens specials;
  auto resolve = [&](const char* key, std::optional<AddedToken>& slot) {
    if (!named.contains(key)) return;  // CLIPTokenizer's constructor default stays
    const Json& v = named[key];
    if (v.is_null()) {
      slot.reset();
      return;
    }
    AddedToken t = parse_added_token(v, false, std::string("'") + key + "'", config_origin);
    // transformers swaps a named token for the saved added token of the same content.
    auto it = added_by_content.find(t.content);
    if (!added_by_content.empty() && it != added_by_content.end()) t = it->second;
    slot = t;
  };
  resolve("bos_token", specials.bos_token);
  resolve("eos_token", specials.eos_token);
  resolve("unk_token", specials.unk_token);
  std::optional<AddedToken> sep, cls, mask;
  resolve("sep_token", sep);
  resolve("pad_token", specials.pad_token);
  resolve("cls_token", cls);
  resolve("mask_token", mask);
  // Keep transformers' order (bos, eos, unk, sep, pad, cls, mask, extras) for "last one wins".
  CLIPSpecialTokens ordered = specials;
  if (sep) ordered.extra_special_tokens.push_back(*sep);
  if (cls) ordered.extra_special_tokens.push_back(*cls);
  if (mask) ordered.extra_special_tokens.push_back(*mask);
  for (const char* key : {"additional_special_tokens", "extra_special_tokens"}) {
    if (!named.contains(key) && !(config && config->contains(key))) continue;
    const Json& list = named.contains(key) ? named[key] : (*config)[key];
    if (list.is_null()) continue;
    if (!list.is_array()) {
      throw ValueError(std::string("'") + key + "' in " + config_origin + " must be a list");
    }
    for (const Json& e : list) {
      ordered.extra_special_tokens.push_back(parse_added_token(e, true, key, config_origin));
    }
  }

  // 3. Lengths and sides.
  std::optional<int64_t> model_max_length;
  std::string padding_side = "right", truncation_side = "right";
  if (config) {
    auto it = config->find("model_max_length");
    if (it != config->end() && !it->is_null()) {
      if (it->is_number_integer()) {
        if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
          model_max_length.reset();
        } else {
          model_max_length = it->get<int64_t>();
        }
      } else if (it->is_number_float()) {
        const double d = it->get<double>();
        if (d >= 1e18) {
          model_max_length.reset();
        } else if (d >= 0 && d == static_cast<double>(static_cast<int64_t>(d))) {
          model_max_length = static_cast<int64_t>(d);
        } else {
          throw ValueError("model_max_length in " + config_origin + " must be a whole number");
        }
      } else {
        throw ValueError("model_max_length in " + config_origin + " must be a number");
      }
      if (model_max_length && *model_max_length < 0) {
        throw ValueError("model_max_length in " + config_origin + " must be non-negative");
      }
    }
    for (auto [key, slot] : {std::pair<const char*, std::string*>{"padding_side", &padding_side},
                             {"truncation_side", &truncation_side}}) {
      auto s = config->find(key);
      if (s == config->end() || s->is_null()) continue;
      if (!s->is_string() || (*s != "left" && *s != "right")) {
        throw ValueError(std::string(key) + " in " + config_origin +
                         " must be \"left\" or \"right\", got " + s->dump());
      }
      *slot = s->get<std::string>();
    }
  }

  CLIPTokenizer tok(std::move(vocab), merges, ordered, model_max_length,
                    std::move(added_tokens_decoder), "'" + model_origin + "'");
  // The named slots keep only bos/eos/unk/pad; sep/cls/mask live on as added tokens.
  tok.special_tokens_.extra_special_tokens.clear();
  tok.padding_side_ = padding_side;
  tok.truncation_side_ = truncation_side;
  return tok;
}

// ---- lookups -----------------------------------------------------------------------------------

std::optional<int64_t> CLIPTokenizer::token_to_id(const std::string& token) const {
  auto a = added_index_.find(token);
  if (a != added_index_.end()) return added_[a->second].id;
  auto v = vocab_.find(token);
  if (v != vocab_.end()) return v->second;
  return std::nullopt;
}

std::optional<std::string> CLIPTokenizer::id_to_token(int64_t id) const {
  for (const Added& a : added_) {
    if (a.id == id) return a.token.content;
  }
  auto v = id_to_vocab_.find(id);
  if (v != id_to_vocab_.end()) return v->second;
  return std::nullopt;
}

std::optional<int64_t> CLIPTokenizer::named_id(const std::optional<AddedToken>& t) const {
  if (!t) return std::nullopt;
  return token_to_id(t->content);
}

int64_t CLIPTokenizer::size() const {
  int64_t n = vocab_size();
  for (const Added& a : added_) {
    if (!vocab_.count(a.token.content)) ++n;
  }
  return n;
}

// ---- encoding ----------------------------------------------------------------------------------

template <typename F>
void CLIPTokenizer::split_on_added(const std::string& text, bool normalized,
                                   std::vector<int64_t>& out, F&& on_text) const {
  // Leftmost-longest, non-overlapping, like tokenizers' Aho-Corasick search. A normalized token is
  // matched by its normalized content.
  std::vector<std::pair<std::string, const Added*>> patterns;
  for (const Added& a : added_) {
    if (a.token.normalized != normalized) continue;
    std::string p = normalized ? normalize(a.token.content) : a.token.content;
    if (!p.empty()) patterns.emplace_back(std::move(p), &a);
  }
  if (patterns.empty()) {
    on_text(text);
    return;
  }
  std::size_t piece_begin = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::pair<std::string, const Added*>* best = nullptr;
    for (const auto& p : patterns) {
      if (p.first.size() > text.size() - i) continue;
      if (text.compare(i, p.first.size(), p.first) != 0) continue;
      if (!best || p.first.size() > best->first.size()) best = &p;
    }
    if (!best) {
      ++i;
      continue;
    }
    const std::size_t end = i + best->first.size();
    if (best->second->token.single_word) {
      const std::optional<int32_t> before = codepoint_before(text, i);
      const std::optional<int32_t> after = codepoint_at(text, end);
      const bool ok = (!before || !is_word_char(*before)) && (!after || !is_word_char(*after));
      if (!ok) {
        i = end;
        continue;
      }
    }
    if (i > piece_begin) on_text(text.substr(piece_begin, i - piece_begin));
    out.push_back(best->second->id);
    i = end;
    piece_begin = end;
  }
  if (piece_begin < text.size()) on_text(text.substr(piece_begin));
}

std::vector<int64_t> CLIPTokenizer::encode(const std::string& text) const {
  // Validate up front so no partial work hides a bad byte deep in the text.
  (void)decode_utf8(text);
  std::vector<int64_t> ids;
  split_on_added(text, /*normalized=*/false, ids,
                 [&](const std::string& piece) { encode_segment(piece, ids); });
  return ids;
}

void CLIPTokenizer::encode_segment(const std::string& raw, std::vector<int64_t>& out) const {
  const std::string norm = normalize(raw);
  split_on_added(norm, /*normalized=*/true, out,
                 [&](const std::string& piece) { encode_normalized(piece, out); });
}

void CLIPTokenizer::encode_normalized(const std::string& normalized,
                                      std::vector<int64_t>& out) const {
  for (const std::string& word : pre_tokenize(normalized)) bpe_word(word, out);
}

void CLIPTokenizer::bpe_word(const std::string& word, std::vector<int64_t>& out) const {
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    auto it = cache_->words.find(word);
    if (it != cache_->words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const ByteLevelTable& bl = byte_level();
  std::vector<int64_t> symbols;
  symbols.reserve(word.size());
  for (std::size_t k = 0; k < word.size(); ++k) {
    std::string s = bl.byte_to_char[static_cast<unsigned char>(word[k])];
    if (k + 1 == word.size()) s += kEndOfWordSuffix;
    auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      symbols.push_back(it->second);
      continue;
    }
    const std::optional<AddedToken>& unk = special_tokens_.unk_token;
    auto unk_it = unk ? vocab_.find(unk->content) : vocab_.end();
    if (unk_it == vocab_.end()) {
      throw ValueError("symbol '" + s + "' is not in the vocabulary of " + origin_ +
                       " and there is no unk token in it to stand for it");
    }
    symbols.push_back(unk_it->second);
  }
  merge_symbols(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
  if (word.size() >= kMaxCachedWordBytes) return;
  std::lock_guard<std::mutex> lock(cache_->mutex);
  if (cache_->words.size() < kWordCacheCapacity) cache_->words.emplace(word, std::move(symbols));
}

void CLIPTokenizer::merge_symbols(std::vector<int64_t>& symbols) const {
  // Merge the lowest-ranked adjacent pair (leftmost on ties) until none is left: the order of
  // tokenizers' priority queue, and as it does, with a heap over a linked list of symbols, so a
  // word of n bytes takes O(n log n) (a megabyte-long word is one pre-tokenized piece).
  const std::size_t n = symbols.size();
  if (n < 2) return;
  std::vector<std::size_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (std::size_t k = 0; k < n; ++k) {
    prev[k] = k == 0 ? n : k - 1;  // n: none
    next[k] = k + 1;
  }
  struct Candidate {
    int64_t rank;
    std::size_t pos;  // the left symbol's index: leftmost in the word is smallest
    int64_t left, right, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto consider = [&](std::size_t left) {
    const std::size_t right = next[left];
    if (left >= n || right >= n) return;
    const uint64_t key = (static_cast<uint64_t>(symbols[left]) << 32) | static_cast<uint64_t>(symbols[right]);
    const auto it = merges_.find(key);
    if (it != merges_.end()) queue.push({it->second.first, left, symbols[left], symbols[right], it->second.second});
  };
  for (std::size_t k = 0; k + 1 < n; ++k) consider(k);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    // A candidate is stale once either symbol was merged away or changed.
    const std::size_t right = next[c.pos];
    if (!alive[c.pos] || right >= n || symbols[c.pos] != c.left || symbols[right] != c.right) continue;
    symbols[c.pos] = c.merged;
    alive[right] = false;
    next[c.pos] = next[right];
    if (next[right] < n) prev[next[right]] = c.pos;
    if (prev[c.pos] < n) consider(prev[c.pos]);
    consider(c.pos);
  }
  std::size_t kept = 0;
  for (std::size_t k = 0; k < n; k = next[k]) symbols[kept++] = symbols[k];
  symbols.resize(kept);
}

CLIPBatchEncoding CLIPTokenizer::operator()(const std::vector<std::string>& texts,
                                            PaddingStrategy padding,
                                            std::optional<bool> truncation,
                                            std::optional<int64_t> max_length,
                                            bool add_special_tokens) const {
  // Ref: transformers tokenization_utils_base.py, _get_padding_truncation_strategies.
  bool truncate =
      truncation.value_or(max_length.has_value() && padding == PaddingStrategy::kDoNotPad);
  if (max_length && *max_length < 0) {
    throw ValueError("max_length must be non-negative, got " + std::to_string(*max_length));
  }
  if (!max_length) {
    if (padding == PaddingStrategy::kMaxLength) {
      if (model_max_length_) {
        max_length = model_max_length_;
      } else {
        padding = PaddingStrategy::kDoNotPad;
      }
    }
    if (truncate) {
      if (model_max_length_) {
        max_length = model_max_length_;
      } else {
        truncate = false;
      }
    }
  }
  std::optional<int64_t> pad_id;
  if (padding != PaddingStrategy::kDoNotPad) {
    pad_id = pad_token_id();
    if (!pad_id) {
      throw ValueError("Asking to pad but the tokenizer does not have a padding token.");
    }
  }
  std::optional<int64_t> bos, eos;
  if (add_special_tokens) {
    bos = bos_token_id();
    eos = eos_token_id();
    if (!bos || !eos) throw ValueError("add_special_tokens needs both a bos and an eos token");
  }
  const int64_t n_special = add_special_tokens ? 2 : 0;

  CLIPBatchEncoding enc;
  enc.input_ids.reserve(texts.size());
  for (const std::string& text : texts) {
    std::vector<int64_t> content = encode(text);
    // tokenizers refuses to truncate below the special tokens' length and transformers then
    // returns the sequence whole.
    if (truncate && max_length && *max_length >= n_special) {
      const auto limit = static_cast<std::size_t>(*max_length - n_special);
      if (content.size() > limit) {
        if (truncation_side_ == "left") {
          content.erase(content.begin(), content.end() - static_cast<std::ptrdiff_t>(limit));
        } else {
          content.resize(limit);
        }
      }
    }
    std::vector<int64_t> ids;
    ids.reserve(content.size() + 2);
    if (add_special_tokens) ids.push_back(*bos);
    ids.insert(ids.end(), content.begin(), content.end());
    if (add_special_tokens) ids.push_back(*eos);
    enc.input_ids.push_back(std::move(ids));
  }

  std::size_t target = 0;
  if (padding == PaddingStrategy::kLongest) {
    for (const auto& ids : enc.input_ids) target = std::max(target, ids.size());
  } else if (padding == PaddingStrategy::kMaxLength) {
    target = static_cast<std::size_t>(*max_length);
  }
  enc.attention_mask.reserve(enc.input_ids.size());
  for (auto& ids : enc.input_ids) {
    std::vector<int64_t> mask(ids.size(), 1);
    if (ids.size() < target) {
      const std::size_t n_pad = target - ids.size();
      if (padding_side_ == "left") {
        ids.insert(ids.begin(), n_pad, *pad_id);
        mask.insert(mask.begin(), n_pad, 0);
      } else {
        ids.insert(ids.end(), n_pad, *pad_id);
        mask.insert(mask.end(), n_pad, 0);
      }
    }
    enc.attention_mask.push_back(std::move(mask));
  }
  return enc;
}

// ---- decoding ----------------------------------------------------------------------------------

std::string CLIPTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  const ByteLevelTable& bl = byte_level();
  std::string bytes;
  for (int64_t id : ids) {
    const Added* added = nullptr;
    for (const Added& a : added_) {
      if (a.id == id) added = &a;
    }
    if (added && skip_special_tokens && added->token.special) continue;
    std::string token;
    if (added) {
      token = added->token.content;
    } else {
      auto v = id_to_vocab_.find(id);
      if (v == id_to_vocab_.end()) continue;  // tokenizers drops ids it does not know
      token = v->second;
    }
    // ByteLevel decoder: a token maps back to bytes only if every character is in the table;
    // otherwise its UTF-8 is used as is.
    std::string mapped;
    bool all_mapped = true;
    try {
      for (int32_t c : decode_utf8(token)) {
        auto it = bl.char_to_byte.find(c);
        if (it == bl.char_to_byte.end()) {
          all_mapped = false;
          break;
        }
        mapped.push_back(static_cast<char>(it->second));
      }
    } catch (const ValueError&) {
      all_mapped = false;
    }
    bytes += all_mapped ? mapped : token;
  }
  std::string text = utf8_lossy(bytes);
  // CLIPTokenizer's decode wrapper: "</w>" -> " ", then str.strip().
  std::string replaced;
  replaced.reserve(text.size());
  const std::string suffix = kEndOfWordSuffix;
  for (std::size_t i = 0; i < text.size();) {
    if (text.compare(i, suffix.size(), suffix) == 0) {
      replaced.push_back(' ');
      i += suffix.size();
    } else {
      replaced.push_back(text[i++]);
    }
  }
  const std::vector<int32_t> cps = decode_utf8(replaced);
  std::size_t b = 0, e = cps.size();
  while (b < e && is_python_space(cps[b])) ++b;
  while (e > b && is_python_space(cps[e - 1])) --e;
  std::string out;
  for (std::size_t k = b; k < e; ++k) append_utf8(cps[k], out);
  return out;
}

}  // namespace nd
