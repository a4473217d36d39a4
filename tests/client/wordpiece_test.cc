// BERT's WordPiece tokenizer on a tiny vocabulary.
#include "client/wordpiece.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/core/test_util.h"

namespace attention::client {
namespace {

using Words = std::vector<std::string>;
using Ids = std::vector<int64_t>;

// Ids: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, then the list's order.
WordPieceTokenizer Tiny() {
  auto t = WordPieceTokenizer::FromVocab({"[PAD]", "[UNK]", "[CLS]", "[SEP]",  // 0..3
                                          "the", "cat", "un", "una",           // 4..7
                                          "##aff", "##able", "##ffable", "runn",  // 8..11
                                          "##ing", ",", ".", "!",              // 12..15
                                          "hello", "cafe", "naive", "a"});     // 16..19
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

TEST(WordPiece, BasicTokenizeLowerCasesAndSplitsPunctuation) {
  EXPECT_EQ(WordPieceTokenizer::BasicTokenize("Hello, WORLD!"),
            (Words{"hello", ",", "world", "!"}));
  EXPECT_EQ(WordPieceTokenizer::BasicTokenize("  don't\tstop\n"),
            (Words{"don", "'", "t", "stop"}));
  EXPECT_EQ(WordPieceTokenizer::BasicTokenize("a+b=c $5"),
            (Words{"a", "+", "b", "=", "c", "$", "5"}));
}

TEST(WordPiece, BasicTokenizeStripsLatinAccentsAndKeepsOtherLetters) {
  EXPECT_EQ(WordPieceTokenizer::BasicTokenize("Caf\u00e9 na\u00efve \u00c0\u00c9\u00ce\u00d5\u00dc"),
            (Words{"cafe", "naive", "aeiou"}));
  // Latin Extended-A and a combining accent.
  EXPECT_EQ(WordPieceTokenizer::BasicTokenize("\u0141\u00f3d\u017a e\u0301"),
            (Words{"\u0142odz", "e"}));
  // No decomposition: lower-cased only.
  EXPECT_EQ(WordPieceTokenizer::BasicTokenize("\u00c6SOP \u00d8L"),
            (Words{"\u00e6sop", "\u00f8l"}));
}

TEST(WordPiece, BasicTokenizeCleansControlsAndSpacesCjk) {
  EXPECT_EQ(WordPieceTokenizer::BasicTokenize(std::string("a\x01\x7f" "b\xc2\xa0" "c")),
            (Words{"ab", "c"}));
  EXPECT_EQ(WordPieceTokenizer::BasicTokenize("\u4e2d\u6587ok"),
            (Words{"\u4e2d", "\u6587", "ok"}));
  EXPECT_EQ(WordPieceTokenizer::BasicTokenize("\u00bfs\u00ed?"), (Words{"\u00bf", "si", "?"}));
  // An invalid UTF-8 byte is dropped.
  EXPECT_EQ(WordPieceTokenizer::BasicTokenize(std::string("ca\xfft")), (Words{"cat"}));
}

TEST(WordPiece, GreedyLongestMatchFirst) {
  const WordPieceTokenizer t = Tiny();
  // "una" is the longest first piece, then "##ffable" (not un ##aff ##able).
  EXPECT_EQ(t.WordPieces("unaffable"), (Ids{7, 10}));
  EXPECT_EQ(t.WordPieces("Running, the CAT."), (Ids{11, 12, 13, 4, 5, 14}));
  EXPECT_EQ(t.WordPieces("Caf\u00e9 na\u00efve!"), (Ids{17, 18, 15}));
}

TEST(WordPiece, UnmatchedOrOverlongWordIsOneUnk) {
  const WordPieceTokenizer t = Tiny();
  EXPECT_EQ(t.WordPieces("xyz"), (Ids{1}));
  // "cat" matches, "##s" does not: the whole word is [UNK].
  EXPECT_EQ(t.WordPieces("the cats"), (Ids{4, 1}));
  EXPECT_EQ(t.WordPieces(std::string(100, 'a')), (Ids{1}));  // "a" + "##a"... unmatched
  EXPECT_EQ(t.WordPieces(std::string(101, 'a') + " a"), (Ids{1, 19}));
}

TEST(WordPiece, EncodeAddsClsSepAndTruncates) {
  const WordPieceTokenizer t = Tiny();
  EXPECT_EQ(t.Encode("hello cat"), (Ids{2, 16, 5, 3}));
  EXPECT_EQ(t.Encode("the cat the cat", 4), (Ids{2, 4, 5, 3}));
  EXPECT_EQ(t.Encode(""), (Ids{2, 3}));
  EXPECT_EQ(t.Token(16), "hello");
  EXPECT_EQ(t.vocab_size(), 20);
}

TEST(WordPiece, VocabWithoutSpecialTokensIsInvalid) {
  auto t = WordPieceTokenizer::FromVocab({"[CLS]", "[SEP]", "a"});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("[UNK]"), std::string::npos) << t.status();
  EXPECT_EQ(WordPieceTokenizer::FromVocabFile("/nonexistent/vocab.txt").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace attention::client
