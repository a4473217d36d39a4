// flags/help: taking the help flags out of argv, the listing, FlagChanged.
#include "flags/help.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"

ABSL_FLAG(int, help_test_width, 7, "a width for the test; its help text is long enough to wrap "
          "at eighty columns, so the listing breaks it over two lines");
ABSL_FLAG(std::string, help_test_name, "", "a name");

namespace attention::flags {
namespace {

std::vector<std::string> Take(std::vector<std::string> args, bool* found) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int argc = static_cast<int>(args.size());
  *found = TakeHelpFlags(argc, argv.data());
  return std::vector<std::string>(argv.begin(), argv.begin() + argc);
}

TEST(FlagHelp, TakesEveryHelpFlagBeforeTheEndOfFlags) {
  bool found = false;
  EXPECT_EQ(Take({"prog", "attend", "--help", "--lq=3", "-h", "-helpfull", "--helpshort"}, &found),
            (std::vector<std::string>{"prog", "attend", "--lq=3"}));
  EXPECT_TRUE(found);
  EXPECT_EQ(Take({"prog", "--lq=3", "--", "--help"}, &found),
            (std::vector<std::string>{"prog", "--lq=3", "--", "--help"}));
  EXPECT_FALSE(found);
  EXPECT_EQ(Take({"prog", "--helpmatch=x", "help"}, &found),
            (std::vector<std::string>{"prog", "--helpmatch=x", "help"}));
  EXPECT_FALSE(found);
}

TEST(FlagHelp, ListsTheFlagsOfAFileWithDefaultsAndWrappedHelp) {
  EXPECT_EQ(FlagsDefinedIn(__FILE__),
            (std::vector<std::string>{"help_test_name", "help_test_width"}));
  const std::string text = HelpText("usage line", {"help_test_width", "help_test_name", "nope"});
  EXPECT_EQ(text,
            "usage line\n\n"
            "  --help_test_width=7\n"
            "      a width for the test; its help text is long enough to wrap at eighty\n"
            "      columns, so the listing breaks it over two lines\n"
            "  --help_test_name=\"\"\n"
            "      a name\n"
            "  --nope (no such flag)\n");
}

TEST(FlagHelp, FlagChangedComparesWithTheDefault) {
  EXPECT_FALSE(FlagChanged("help_test_width"));
  absl::SetFlag(&FLAGS_help_test_width, 8);
  EXPECT_TRUE(FlagChanged("help_test_width"));
  absl::SetFlag(&FLAGS_help_test_width, 7);
  EXPECT_FALSE(FlagChanged("help_test_width"));
  EXPECT_FALSE(FlagChanged("nope"));
}

}  // namespace
}  // namespace attention::flags
