// BERT's WordPiece tokenizer (Hugging Face BertTokenizer / tokenizers'
// BertNormalizer + BertPreTokenizer + WordPiece), for running a BERT encoder
// such as all-MiniLM-L6-v2 from its vocab.txt:
//   1. normalise: drop NUL, U+FFFD and control characters, whitespace to ' ',
//      spaces around CJK ideographs, strip accents, lower-case;
//   2. split on whitespace, and every punctuation character is a word;
//   3. each word greedily to its longest vocabulary prefix, the rest as
//      '##'-continued pieces; a word of more than 100 characters or with a
//      piece not in the vocabulary is [UNK];
//   4. [CLS] pieces [SEP], the pieces truncated to max_tokens - 2.
// Unicode coverage: lower-casing and accent stripping know ASCII, Latin-1
// Supplement, Latin Extended-A, basic Greek (with tonos and dialytika) and
// Cyrillic (with Ё and Й) and the combining diacritics (U+0300..U+036F);
// outside those a character is kept as it is (no full NFD), so e.g. a
// Vietnamese (Latin Extended Additional) or Latin Extended-B accent stays on
// its letter, where Hugging Face's tokenizer would strip it. Punctuation is
// ASCII's, Latin-1's and the General and CJK Punctuation blocks.
//
// Thread-safety: const methods may be called concurrently.
#ifndef ATTENTION_CLIENT_WORDPIECE_H_
#define ATTENTION_CLIENT_WORDPIECE_H_

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace attention::client {

class WordPieceTokenizer {
 public:
  // Token ids are line numbers (from 0) of vocab.txt, one token per line.
  // NOT_FOUND if the file cannot be read; INVALID_ARGUMENT as FromVocab.
  static absl::StatusOr<WordPieceTokenizer> FromVocabFile(const std::string& path);
  // `tokens[i]` has id i. INVALID_ARGUMENT when [UNK], [CLS] or [SEP] is
  // missing.
  static absl::StatusOr<WordPieceTokenizer> FromVocab(std::vector<std::string> tokens);

  // Steps 1 and 2: the words of `text` (UTF-8; an invalid byte is dropped).
  static std::vector<std::string> BasicTokenize(absl::string_view text);
  // Steps 1 to 3: the WordPiece ids of `text`, without [CLS] and [SEP].
  std::vector<int64_t> WordPieces(absl::string_view text) const;
  // All four steps: [CLS] pieces [SEP], at most max_tokens (>= 2) ids.
  std::vector<int64_t> Encode(absl::string_view text, int64_t max_tokens = 512) const;

  // The token of `id` (0 <= id < vocab_size()).
  const std::string& Token(int64_t id) const { return tokens_[id]; }
  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  explicit WordPieceTokenizer(std::vector<std::string> tokens);

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
  int64_t unk_ = 0, cls_ = 0, sep_ = 0;
};

}  // namespace attention::client

#endif  // ATTENTION_CLIENT_WORDPIECE_H_
