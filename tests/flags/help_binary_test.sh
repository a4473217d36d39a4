#!/usr/bin/env bash
# --help of attention_server, attention_loadtest and attention_cli: exit 0,
# list the binary's own flags with their defaults, not absl's internal ones;
# attention_cli help [COMMAND] and COMMAND --help list a command's flags,
# and every flag of attention_cli belongs to some command.
# Usage: help_binary_test.sh <build/bin>
set -euo pipefail
bin="$1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# check_help NAME FILE FLAG=DEFAULT...: FILE lists each flag with its default
# and none of absl's own flags.
check_help() {
  local name="$1" file="$2"
  shift 2
  for flag in "$@"; do
    grep -qx -- "  --$flag" "$file" || { echo "$name: no '--$flag' in:"; cat "$file"; exit 1; }
  done
  if grep -qE -- '--(flagfile|fromenv|tryfromenv|undefok|helpfull)\b' "$file"; then
    echo "$name: lists absl's flags:"; cat "$file"; exit 1
  fi
}

"$bin/attention_server" --help >"$work/server"
check_help attention_server "$work/server" listen=127.0.0.1:50051 workers=2 kv_cache_mb=1024 \
  tls_cert='""'
"$bin/attention_server" --helpfull >"$work/server_full"
cmp "$work/server" "$work/server_full"

"$bin/attention_loadtest" --help >"$work/loadtest"
check_help attention_loadtest "$work/loadtest" rpc=attend concurrency=1 duration=10

"$bin/attention_cli" --help >"$work/cli"
check_help attention_cli "$work/cli" target=127.0.0.1:50051 lq=16 weights_dir='""' svg='""'
grep -q '^  compare$' "$work/cli"
"$bin/attention_cli" help >"$work/cli_help"
cmp "$work/cli" "$work/cli_help"

# A command's own flags and the connection flags, not the others.
"$bin/attention_cli" attend --help >"$work/attend"
check_help "attention_cli attend" "$work/attend" hq=8 q='""' keep='""' target=127.0.0.1:50051
if grep -qx -- '  --svg=""' "$work/attend"; then echo "attend lists --svg"; exit 1; fi
"$bin/attention_cli" help decode >"$work/decode"
check_help "attention_cli help decode" "$work/decode" chunk=1 lq=16 module=demo-gqa
"$bin/attention_cli" --help compare | grep -qx -- '  --mla_rank=0'
"$bin/attention_cli" help estimate | grep -qx -- '  --rope_interleave=false'
grep -qx -- '  --return_lse=false' "$work/attend"

# Every flag of attention_cli is read by some command.
commands=$(awk '/^Commands:/ {on=1; next} /^$/ && on {exit} on && /^  [a-z]/ {print $1}' "$work/cli")
[[ $(echo "$commands" | wc -w) -eq 10 ]] || { echo "commands: $commands"; exit 1; }
for c in $commands; do "$bin/attention_cli" help "$c"; done >"$work/all_commands"
sed -n 's/^  --\([a-z_0-9]*\)=.*/\1/p' "$work/cli" >"$work/cli_flags"
[[ $(wc -l <"$work/cli_flags") -gt 50 ]] || { echo "flags:"; cat "$work/cli_flags"; exit 1; }
while read -r flag; do
  grep -q -- "^  --$flag=" "$work/all_commands" || { echo "no command lists --$flag"; exit 1; }
done <"$work/cli_flags"

# An unknown command is refused, naming the commands.
if "$bin/attention_cli" help frobnicate 2>"$work/err"; then echo "help frobnicate succeeded"; exit 1; fi
grep -q "unknown command 'frobnicate' (expected info, " "$work/err"
echo "help_binary_test: passed"
