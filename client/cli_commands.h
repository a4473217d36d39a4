// attention_cli's commands: what each does and which flags it reads, for
// `attention_cli help [COMMAND]` and `attention_cli [COMMAND] --help`.
#ifndef ATTENTION_CLIENT_CLI_COMMANDS_H_
#define ATTENTION_CLIENT_CLI_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace attention::client {

struct CliCommand {
  const char* name;     // e.g. "attend"
  const char* summary;  // one paragraph
  std::vector<std::string> flags;  // the flags it reads, beyond the connection flags
};

// Every command, in the order `help` lists them.
const std::vector<CliCommand>& CliCommands();

// The flags every command that calls the server reads (--target, TLS, token,
// deadline).
const std::vector<std::string>& ConnectionFlags();

// Help for `command`: its summary and flags (with defaults) and the
// connection flags. For an empty `command`: every command's summary and
// `all_flags`. INVALID_ARGUMENT names an unknown command.
absl::StatusOr<std::string> CliHelp(absl::string_view command,
                                    const std::vector<std::string>& all_flags);

}  // namespace attention::client

#endif  // ATTENTION_CLIENT_CLI_COMMANDS_H_
