#include "client/wordpiece.h"

#include <algorithm>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"

namespace attention::client {
namespace {

constexpr int64_t kMaxCharsPerWord = 100;

// UTF-8 to code points; an invalid or truncated sequence becomes U+FFFD
// (which the normaliser drops, as Hugging Face's does).
std::u32string DecodeUtf8(absl::string_view s) {
  std::u32string out;
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra = 0;
    char32_t cp = 0;
    if (c < 0x80) {
      cp = c;
    } else if ((c & 0xE0) == 0xC0) {
      cp = c & 0x1F, extra = 1;
    } else if ((c & 0xF0) == 0xE0) {
      cp = c & 0x0F, extra = 2;
    } else if ((c & 0xF8) == 0xF0) {
      cp = c & 0x07, extra = 3;
    } else {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    bool ok = true;
    for (int k = 1; k <= extra; ++k) {
      if (i + k >= s.size() || (static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    }
    if (!ok) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += extra + 1;
  }
  return out;
}

void AppendUtf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string EncodeUtf8(const char32_t* begin, const char32_t* end) {
  std::string out;
  for (const char32_t* p = begin; p != end; ++p) AppendUtf8(*p, out);
  return out;
}

bool IsWhitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x0B || c == 0x0C ||
         c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Cc and the common Cf characters (tab, newline and return are whitespace).
bool IsControl(char32_t c) {
  return c < 0x20 || (c >= 0x7F && c < 0xA0) || c == 0xAD || (c >= 0x200B && c <= 0x200F) ||
         (c >= 0x202A && c <= 0x202E) || (c >= 0x2060 && c <= 0x2064) || c == 0xFEFF;
}

bool IsCjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// BERT's: every ASCII non-alphanumeric printable character, and Unicode
// punctuation (P*) of Latin-1 and the General and CJK Punctuation blocks.
bool IsPunctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126)) {
    return true;
  }
  switch (c) {
    case 0xA1: case 0xA7: case 0xAB: case 0xB6: case 0xB7: case 0xBB: case 0xBF:
      return true;
    default:
      break;
  }
  return (c >= 0x2010 && c <= 0x2027) || (c >= 0x2030 && c <= 0x2043) ||
         (c >= 0x2045 && c <= 0x2051) || (c >= 0x2053 && c <= 0x205E) ||
         (c >= 0x3001 && c <= 0x3003) || (c >= 0x3008 && c <= 0x3011) ||
         (c >= 0x3014 && c <= 0x301F);
}

// The base letter of a Latin-1 Supplement, Latin Extended-A, Greek or
// Cyrillic letter whose NFD is that letter plus combining marks (the Greek
// and Cyrillic ones listed); 0 for any other character.
char32_t AccentBase(char32_t c) {
  // U+00C0..U+00FF; '.' has no decomposition.
  static constexpr char kLatin1[] =
      "AAAAAA.CEEEEIIII.NOOOOO..UUUUY.."
      "aaaaaa.ceeeeiiii.nooooo..uuuuy.y";
  // U+0100..U+017F.
  static constexpr char kLatinA[] =
      "AaAaAaCcCcCcCcDd..EeEeEeEeEeGgGgGgGgHh..IiIiIiIiI...JjKk.LlLlLl....NnNnNn...OoOoOo..RrRrRrSsSs"
      "SsSsTtTt..UuUuUuUuUuUuWwYyYZzZzZz.";
  if (c >= 0xC0 && c <= 0xFF) {
    const char b = kLatin1[c - 0xC0];
    return b == '.' ? 0 : static_cast<char32_t>(b);
  }
  if (c >= 0x100 && c <= 0x17F) {
    const char b = kLatinA[c - 0x100];
    return b == '.' ? 0 : static_cast<char32_t>(b);
  }
  switch (c) {  // Greek tonos and dialytika, Cyrillic Ё and Й
    case 0x386: return 0x391;
    case 0x388: return 0x395;
    case 0x389: return 0x397;
    case 0x38A: case 0x3AA: return 0x399;
    case 0x38C: return 0x39F;
    case 0x38E: case 0x3AB: return 0x3A5;
    case 0x38F: return 0x3A9;
    case 0x3AC: return 0x3B1;
    case 0x3AD: return 0x3B5;
    case 0x3AE: return 0x3B7;
    case 0x3AF: case 0x3CA: case 0x390: return 0x3B9;
    case 0x3CC: return 0x3BF;
    case 0x3CD: case 0x3CB: case 0x3B0: return 0x3C5;
    case 0x3CE: return 0x3C9;
    case 0x401: return 0x415;
    case 0x451: return 0x435;
    case 0x419: return 0x418;
    case 0x439: return 0x438;
    default: return 0;
  }
}

char32_t ToLower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0xC0) return c;
  if (c <= 0xDE) return c == 0xD7 ? c : c + 32;
  if (c >= 0x100 && c <= 0x137) return c | 1;
  if (c >= 0x139 && c <= 0x148) return (c & 1) ? c + 1 : c;
  if (c >= 0x14A && c <= 0x177) return c | 1;
  if (c == 0x178) return 0xFF;
  if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c + 1 : c;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

// Step 1: BertNormalizer (clean text, CJK spacing, strip accents, lower case).
std::u32string Normalize(absl::string_view text) {
  std::u32string out;
  for (char32_t c : DecodeUtf8(text)) {
    if (c == 0 || c == 0xFFFD || (IsControl(c) && !IsWhitespace(c))) continue;
    if (IsWhitespace(c)) {
      out.push_back(' ');
      continue;
    }
    if (IsCjk(c)) {
      out.push_back(' ');
      out.push_back(c);
      out.push_back(' ');
      continue;
    }
    if (c >= 0x300 && c <= 0x36F) continue;  // combining marks (Mn)
    if (const char32_t base = AccentBase(c); base != 0) c = base;
    out.push_back(ToLower(c));
  }
  return out;
}

// Step 2 on normalised text: words, each as code points.
std::vector<std::u32string> SplitWords(const std::u32string& text) {
  std::vector<std::u32string> words;
  std::u32string word;
  for (char32_t c : text) {
    if (c == ' ' || IsPunctuation(c)) {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
      if (c != ' ') words.push_back(std::u32string(1, c));
    } else {
      word.push_back(c);
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

}  // namespace

WordPieceTokenizer::WordPieceTokenizer(std::vector<std::string> tokens)
    : tokens_(std::move(tokens)) {
  ids_.reserve(tokens_.size());
  // The first of a token listed twice keeps it (as Hugging Face's).
  for (size_t i = 0; i < tokens_.size(); ++i) ids_.emplace(tokens_[i], static_cast<int64_t>(i));
}

absl::StatusOr<WordPieceTokenizer> WordPieceTokenizer::FromVocab(std::vector<std::string> tokens) {
  WordPieceTokenizer t(std::move(tokens));
  for (auto [name, id] : {std::pair{"[UNK]", &t.unk_}, std::pair{"[CLS]", &t.cls_},
                          std::pair{"[SEP]", &t.sep_}}) {
    auto it = t.ids_.find(name);
    if (it == t.ids_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("vocab: no token ", name));
    }
    *id = it->second;
  }
  return t;
}

absl::StatusOr<WordPieceTokenizer> WordPieceTokenizer::FromVocabFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("vocab: cannot read ", path));
  std::vector<std::string> tokens;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
    tokens.push_back(line);
  }
  absl::StatusOr<WordPieceTokenizer> t = FromVocab(std::move(tokens));
  if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", t.status().message()));
  return t;
}

std::vector<std::string> WordPieceTokenizer::BasicTokenize(absl::string_view text) {
  std::vector<std::string> out;
  for (const std::u32string& w : SplitWords(Normalize(text))) {
    out.push_back(EncodeUtf8(w.data(), w.data() + w.size()));
  }
  return out;
}

std::vector<int64_t> WordPieceTokenizer::WordPieces(absl::string_view text) const {
  std::vector<int64_t> ids;
  for (const std::u32string& word : SplitWords(Normalize(text))) {
    if (static_cast<int64_t>(word.size()) > kMaxCharsPerWord) {
      ids.push_back(unk_);
      continue;
    }
    std::vector<int64_t> pieces;
    size_t start = 0;
    bool bad = false;
    while (start < word.size()) {
      // The longest vocabulary piece starting at `start`.
      int64_t found = -1;
      size_t end = word.size();
      for (; end > start; --end) {
        std::string piece = start > 0 ? "##" : "";
        piece += EncodeUtf8(word.data() + start, word.data() + end);
        auto it = ids_.find(piece);
        if (it != ids_.end()) {
          found = it->second;
          break;
        }
      }
      if (found < 0) {
        bad = true;
        break;
      }
      pieces.push_back(found);
      start = end;
    }
    if (bad) {
      ids.push_back(unk_);
    } else {
      ids.insert(ids.end(), pieces.begin(), pieces.end());
    }
  }
  return ids;
}

std::vector<int64_t> WordPieceTokenizer::Encode(absl::string_view text, int64_t max_tokens) const {
  std::vector<int64_t> pieces = WordPieces(text);
  const size_t keep = static_cast<size_t>(std::max<int64_t>(0, max_tokens - 2));
  if (pieces.size() > keep) pieces.resize(keep);
  std::vector<int64_t> ids;
  ids.reserve(pieces.size() + 2);
  ids.push_back(cls_);
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  ids.push_back(sep_);
  return ids;
}

}  // namespace attention::client
