// --help for the project's binaries: each lists the flags its own main file
// defines (name, default, help text), not absl's internal flags, and exits
// 0. absl's built-in --help lists only the flags of files named like the
// program, so the binaries take the help flags out of argv before
// absl::ParseCommandLine and print this listing instead:
//
//   if (attention::flags::ParseCommandLineOrHelp(argc, argv, __FILE__)) return 0;
//
// or, for a binary with commands of their own help, TakeHelpFlags, then
// absl::ParseCommandLine, then HelpText. Also FlagChanged, for a binary that
// refuses flags which would be ignored.
#ifndef ATTENTION_FLAGS_HELP_H_
#define ATTENTION_FLAGS_HELP_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace attention::flags {

// Removes every help flag (--help, --helpfull, --helpshort, -h, with one or
// two dashes, before a "--" that ends the flags) from argv, updating argc;
// returns whether there was one.
bool TakeHelpFlags(int& argc, char** argv);

// TakeHelpFlags, then absl::ParseCommandLine (which exits on a bad flag);
// with a help flag, prints HelpText(absl::ProgramUsageMessage(), the flags
// of `main_file`) on stdout and returns true: the caller exits 0.
bool ParseCommandLineOrHelp(int argc, char** argv, absl::string_view main_file);

// The names of the flags defined in `file` (pass __FILE__ from the file
// that defines them), sorted.
std::vector<std::string> FlagsDefinedIn(absl::string_view file);

// `usage`, then one entry per flag of `names` in that order:
//   --NAME=DEFAULT
//       HELP, wrapped at 80 columns
// A name that is no flag is listed as "--NAME (no such flag)".
std::string HelpText(absl::string_view usage, const std::vector<std::string>& names);

// `text` wrapped at 80 columns, each line indented by 6 spaces and ended
// by a newline (how HelpText sets a flag's help).
std::string WrapText(absl::string_view text);

// Whether flag `name` holds a value other than its default (set on the
// command line to something else). False for a name that is no flag.
bool FlagChanged(absl::string_view name);

}  // namespace attention::flags

#endif  // ATTENTION_FLAGS_HELP_H_
