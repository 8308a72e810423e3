// Mirrors transformers CLIPTokenizer (models/clip/tokenization_clip.py).
//
// transformers 5 builds CLIPTokenizer as a `tokenizers` pipeline; this class reproduces that
// pipeline id for id:
//   1. added tokens (<|startoftext|>, <|endoftext|>, a pad token such as SDXL's "!") are cut out of
//      the raw text first; tokens flagged `normalized` are cut out again after normalization;
//   2. normalizer: NFC, then `\s+` -> " ", then per-character lowercase (Rust char::to_lowercase:
//      no final-sigma rule, U+0130 becomes "i\u0307");
//   3. pre-tokenizer: CLIP's split regex (contractions | letters+ | one digit | other non-space+),
//      then GPT-2 byte-level mapping;
//   4. BPE with end-of-word suffix "</w>", merges applied by rank, unknown symbols -> unk id;
//   5. post-processor: <|startoftext|> ... <|endoftext|>;
// and then transformers' __call__ rules for padding, truncation and attention masks.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace nd {

// One entry of a tokenizer's added vocabulary (tokenizers' AddedToken). Only `content`,
// `normalized`, `single_word` and `special` can change ids or decoding: lstrip/rstrip would only
// absorb whitespace that CLIP's pre-tokenizer drops anyway.
struct AddedToken {
  std::string content;
  bool special = true;
  bool normalized = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
};

// The named special tokens. bos/eos/unk/pad default to CLIPTokenizer's constructor defaults; an
// empty optional is a token the files set to null.
struct CLIPSpecialTokens {
  std::optional<AddedToken> bos_token = AddedToken{"<|startoftext|>"};
  std::optional<AddedToken> eos_token = AddedToken{"<|endoftext|>"};
  std::optional<AddedToken> unk_token = AddedToken{"<|endoftext|>"};
  std::optional<AddedToken> pad_token = AddedToken{"<|endoftext|>"};
  // sep/cls/mask and additional_special_tokens are unused by CLIP but still become added tokens,
  // which changes how text containing them is split.
  std::vector<AddedToken> extra_special_tokens;
};

// transformers' PaddingStrategy.
enum class PaddingStrategy { kDoNotPad, kLongest, kMaxLength };

// input_ids and attention_mask of a batch, as transformers' BatchEncoding holds them.
struct CLIPBatchEncoding {
  std::vector<std::vector<int64_t>> input_ids;
  std::vector<std::vector<int64_t>> attention_mask;
};

class CLIPTokenizer {
 public:
  using Vocab = std::unordered_map<std::string, int64_t>;
  using Merges = std::vector<std::pair<std::string, std::string>>;

  // `added_tokens_decoder` is the ordered list transformers adds before the named special tokens
  // (tokenizer_config.json's added_tokens_decoder, or tokenizer.json's added_tokens). An empty
  // `model_max_length` is transformers' VERY_LARGE_INTEGER: no implicit padding or truncation.
  // `origin` names the source in error messages. Throws ValueError for inconsistent inputs (merge
  // parts or results missing from the vocabulary, empty special token content).
  CLIPTokenizer(Vocab vocab, const Merges& merges, CLIPSpecialTokens special_tokens = {},
                std::optional<int64_t> model_max_length = 77,
                std::vector<AddedToken> added_tokens_decoder = {},
                std::string origin = "<in-memory vocabulary>");
  CLIPTokenizer(CLIPTokenizer&&) noexcept;
  CLIPTokenizer& operator=(CLIPTokenizer&&) noexcept;
  ~CLIPTokenizer();

  // Loads a diffusers `tokenizer/` folder: tokenizer.json when present, else vocab.json +
  // merges.txt; plus tokenizer_config.json and special_tokens_map.json, resolved with
  // transformers' precedence. Missing files -> OSError; malformed content -> ValueError naming the
  // file and the problem.
  static CLIPTokenizer from_folder(const std::string& dir);

  // Token ids of `text` without bos/eos. Invalid UTF-8 -> ValueError.
  std::vector<int64_t> encode(const std::string& text) const;

  // transformers' __call__ for a batch. `truncation` keeps transformers' tri-state: unset means
  // "truncate only when max_length is given without padding". Truncation drops content from the
  // truncation side and always keeps bos/eos.
  CLIPBatchEncoding operator()(const std::vector<std::string>& texts,
                               PaddingStrategy padding = PaddingStrategy::kDoNotPad,
                               std::optional<bool> truncation = std::nullopt,
                               std::optional<int64_t> max_length = std::nullopt,
                               bool add_special_tokens = true) const;

  // Byte-level decode; "</w>" ends a word; special added tokens are dropped on request.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  std::optional<int64_t> token_to_id(const std::string& token) const;
  std::optional<std::string> id_to_token(int64_t id) const;

  const std::optional<int64_t>& model_max_length() const { return model_max_length_; }
  void set_model_max_length(std::optional<int64_t> value);
  std::optional<int64_t> bos_token_id() const { return named_id(special_tokens_.bos_token); }
  std::optional<int64_t> eos_token_id() const { return named_id(special_tokens_.eos_token); }
  std::optional<int64_t> pad_token_id() const { return named_id(special_tokens_.pad_token); }
  std::optional<int64_t> unk_token_id() const { return named_id(special_tokens_.unk_token); }
  const CLIPSpecialTokens& special_tokens() const { return special_tokens_; }
  // Base vocabulary without added tokens (transformers' vocab_size) and with them (len()).
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  int64_t size() const;
  const std::string& padding_side() const { return padding_side_; }
  const std::string& truncation_side() const { return truncation_side_; }

 private:
  struct Added {
    AddedToken token;
    int64_t id;
  };
  struct WordCache;

  std::optional<int64_t> named_id(const std::optional<AddedToken>& t) const;
  void add_token(const AddedToken& token);
  // Splits `text` on added tokens whose `normalized` flag equals `normalized`; calls `on_text`
  // for the pieces between matches and appends matched ids to `out`.
  template <typename F>
  void split_on_added(const std::string& text, bool normalized, std::vector<int64_t>& out,
                      F&& on_text) const;
  void encode_segment(const std::string& raw, std::vector<int64_t>& out) const;
  void encode_normalized(const std::string& normalized, std::vector<int64_t>& out) const;
  void bpe_word(const std::string& word, std::vector<int64_t>& out) const;
  // Applies the merges to one word's symbols, in place.
  void merge_symbols(std::vector<int64_t>& symbols) const;

  Vocab vocab_;
  std::unordered_map<int64_t, std::string> id_to_vocab_;
  // (left id << 32 | right id) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<int64_t, int64_t>> merges_;
  std::vector<Added> added_;
  std::unordered_map<std::string, std::size_t> added_index_;
  CLIPSpecialTokens special_tokens_;
  std::optional<int64_t> model_max_length_;
  std::string padding_side_ = "right";
  std::string truncation_side_ = "right";
  std::string origin_;
  std::unique_ptr<WordCache> cache_;
};

}  // namespace nd
