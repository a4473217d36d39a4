#include "flags/help.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace attention::flags {
namespace {

constexpr size_t kWidth = 80;
constexpr absl::string_view kIndent = "      ";

bool IsHelpFlag(absl::string_view arg) {
  if (absl::ConsumePrefix(&arg, "--") || absl::ConsumePrefix(&arg, "-")) {
    return arg == "help" || arg == "helpfull" || arg == "helpshort" || arg == "h";
  }
  return false;
}

}  // namespace

bool TakeHelpFlags(int& argc, char** argv) {
  bool found = false;
  int kept = 1;
  bool flags_ended = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) flags_ended = true;
    if (!flags_ended && IsHelpFlag(argv[i])) {
      found = true;
      continue;
    }
    argv[kept++] = argv[i];
  }
  argc = kept;
  argv[argc] = nullptr;
  return found;
}

bool ParseCommandLineOrHelp(int argc, char** argv, absl::string_view main_file) {
  const bool help = TakeHelpFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  if (!help) return false;
  std::fputs(HelpText(absl::ProgramUsageMessage(), FlagsDefinedIn(main_file)).c_str(), stdout);
  return true;
}

std::vector<std::string> FlagsDefinedIn(absl::string_view file) {
  // absl's default usage config reports a flag's file without its leading
  // slashes ("/src/x.cc" as "src/x.cc"): compare both sides that way.
  auto normalized = [](absl::string_view f) {
    const size_t start = f.find_first_not_of("\\/");
    return start == absl::string_view::npos ? absl::string_view() : f.substr(start);
  };
  std::vector<std::string> names;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (normalized(flag->Filename()) == normalized(file)) names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string HelpText(absl::string_view usage, const std::vector<std::string>& names) {
  std::string out = absl::StrCat(usage, "\n\n");
  for (const std::string& name : names) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) {
      absl::StrAppend(&out, "  --", name, " (no such flag)\n");
      continue;
    }
    const std::string value = flag->DefaultValue();
    absl::StrAppend(&out, "  --", name, "=", value.empty() ? "\"\"" : value, "\n");
    absl::StrAppend(&out, WrapText(flag->Help()));
  }
  return out;
}

std::string WrapText(absl::string_view text) {
  std::string out;
  size_t column = 0;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (column > 0 && column + 1 + word.size() > kWidth) {
      out += "\n";
      column = 0;
    }
    if (column == 0) {
      absl::StrAppend(&out, kIndent, word);
      column = kIndent.size() + word.size();
    } else {
      absl::StrAppend(&out, " ", word);
      column += 1 + word.size();
    }
  }
  out += "\n";
  return out;
}

bool FlagChanged(absl::string_view name) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  return flag != nullptr && flag->CurrentValue() != flag->DefaultValue();
}

}  // namespace attention::flags
