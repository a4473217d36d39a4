#!/usr/bin/env bash
# attention_cli against a real attention_server: the refusals that name the
# flag (inputs it would ignore or misread, a request over the message limit,
# an empty decode, load without --name), `info`'s summary, and `compare`
# with a state_dict that has biases. The server serves on throughout.
# Usage: cli_binary_test.sh <build/bin>
set -euo pipefail
bin="$1"
work=$(mktemp -d)
pid=""
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT

source "$(dirname "$0")/../lib/start_server.sh"
start_server "$bin" "$work/server.log"
cli=("$bin/attention_cli" --target "127.0.0.1:$port")

# refuses ERROR_TEXT ARGS...: attention_cli ARGS exits 1 with ERROR_TEXT on
# stderr and prints nothing on stdout.
refuses() {
  local text="$1"
  shift
  if "${cli[@]}" "$@" >"$work/out" 2>"$work/err"; then
    echo "attention_cli $* succeeded"; cat "$work/out"; exit 1
  fi
  grep -qF -- "$text" "$work/err" || { echo "attention_cli $*:"; cat "$work/err"; exit 1; }
  [[ ! -s "$work/out" ]] || { echo "attention_cli $* printed:"; cat "$work/out"; exit 1; }
}

# .npy files without NumPy: npy DESCR SHAPE COUNT VALUE FILE.
npy() {
  /usr/bin/python3 - "$@" <<'PY'
import struct, sys
descr, shape, count, value, path = sys.argv[1:]
header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, shape)
header += " " * (63 - (len(header) + 10) % 64) + "\n"
fmt = {"<f4": "f", "<i4": "i", "|b1": "?"}[descr]
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    f.write(struct.pack("<%d%s" % (int(count), fmt), *[type(eval(value))(eval(value))] * int(count)))
PY
}
npy '<f4' '1, 8, 4, 64' 2048 0.5 "$work/q.npy"
npy '<f4' '1, 2, 4, 64' 512 0.25 "$work/kv.npy"
npy '<i4' '1, 8, 4, 64' 2048 1 "$work/q_int.npy"
npy '|b1' '1, 1, 4, 4' 16 True "$work/keep.npy"

# Files: all three or none; the shape flags describe random inputs only.
"${cli[@]}" attend --q "$work/q.npy" --k "$work/kv.npy" --v "$work/kv.npy" --keep "$work/keep.npy" \
  | grep -q 'shape \[1, 8, 4, 64\]'
refuses '--q, --k, --v: give all three .npy files, or none' attend --q "$work/q.npy"
refuses '--hq, --lq: not used with --q/--k/--v' \
  attend --q "$work/q.npy" --k "$work/kv.npy" --v "$work/kv.npy" --lq 7 --hq 4
refuses "--q: $work/q_int.npy holds '<i4' elements; inputs must be float" \
  attend --q "$work/q_int.npy" --k "$work/kv.npy" --v "$work/kv.npy"
refuses '--lq: not used with --query' forward --query "$work/q.npy" --lq 3

# Too large for a message: refused before it is built, naming the flags.
refuses "--b, --hq, --hkv, --lq, --lk, --dk, --dv: the request (q, k, v) would carry" \
  attend --lq 100000
refuses "over the client's message limit of 256 MiB" attend --lq 100000
refuses '--b, --lq: the request (query) would carry' forward --lq 1000000
refuses '--lq: must be at least 1, got 0' decode --lq 0
refuses '--chunk: must be at least 1, got 0' decode --chunk 0
refuses '--name: load needs a module name' load
refuses '--name: unload needs a module name' unload

# info: a summary, one "name: value" per figure.
"${cli[@]}" info >"$work/info"
grep -q '^server: attention .*, oneDNN .*, isa ' "$work/info"
grep -q '^modules: 5 loaded: .*demo-mla' "$work/info"
grep -qx '  max_message: 256.0 MiB' "$work/info"
grep -qx '  inflight_requests: 0' "$work/info"
[[ $(awk '/blocks_used:/ {print $2}' "$work/info") == 0 ]]
grep -qx '  Attend: OK 1' "$work/info"   # the refusals above never reached the server

# compare with a PyTorch-style MHA state_dict with biases (nn.Linear's
# default): W_{q,k,v,o}.weight [64, 64] and .bias [64].
mkdir "$work/sd"
for w in W_q W_k W_v W_o; do
  npy '<f4' '64, 64' 4096 0.01 "$work/sd/$w.weight.npy"
  npy '<f4' '64,' 64 0.1 "$work/sd/$w.bias.npy"
done
"${cli[@]}" load --name biased --variant mha --d_model 64 --heads 4 --weights_dir "$work/sd" \
  | grep -q '^biased'
"${cli[@]}" compare --weights_dir "$work/sd" --d_model 64 --heads 4 --seq 16 --gqa_kv_heads 2 \
  --decode_steps 1 --quality_len 16 >"$work/compare"
grep -q 'The state_dict has biases' "$work/compare"
grep -q '^| MLA (latent 8+8) |' "$work/compare"

# A layer out of a Hugging Face checkpoint (q_proj... under a prefix, BF16,
# beside another layer), read locally and sent; a prefix that matches
# nothing, and --file on a server without --model_dir, are refused.
/usr/bin/python3 - "$work/model.safetensors" <<'PY'
import json, struct, sys
tensors, data = {}, b""
for layer in (0, 1):
    for p in ("q", "k", "v", "o"):
        for part, shape in (("weight", [64, 64]), ("bias", [64])):
            n = shape[0] * (shape[1] if len(shape) > 1 else 1)
            bits = 0x3c24 if part == "weight" else 0x3dcd
            raw = struct.pack("<%dH" % n, *[bits] * n)
            tensors["model.layers.%d.self_attn.%s_proj.%s" % (layer, p, part)] = {
                "dtype": "BF16", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
            data += raw
header = json.dumps(tensors).encode()
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header + data)
PY
"${cli[@]}" load --name hf --variant mha --d_model 64 --heads 4 \
  --safetensors "$work/model.safetensors" --prefix model.layers.1.self_attn. | grep -q '^hf'
out=$("${cli[@]}" load --name hf2 --variant mha --d_model 64 --heads 4 \
  --safetensors "$work/model.safetensors" --prefix model.layers.7. 2>&1) && exit 1
grep -q -- "--prefix: no tensor" <<<"$out" || { echo "$out"; exit 1; }
# A Llama-style layer: rope, no biases; the flag's bad value is named.
"${cli[@]}" load --name llama --variant gqa --d_model 64 --heads 4 --kv_heads 2 --bias=false \
  --rope neox --rope_theta 500000 | grep -q '^llama'
out=$("${cli[@]}" load --name bad-rope --variant gqa --d_model 64 --heads 4 --kv_heads 2 \
  --rope yarn 2>&1) && exit 1
grep -q -- "--rope: expected none, neox or gptj" <<<"$out" || { echo "$out"; exit 1; }
# Sliding window, soft-cap, sinks: in attend (with the lse), and as a layer's
# config (random weights, sinks included); on mla the server names the field.
"${cli[@]}" attend --hq 4 --hkv 2 --lq 3 --lk 5 --dk 8 --dv 8 --sliding_window 2 \
  --logit_softcap 5 --sinks 0.5,-1,2,0 --return_lse >"$work/terms"
grep -q '^lse.*shape \[1, 4, 3\]' "$work/terms" || { cat "$work/terms"; exit 1; }
refuses '--sinks: bad number' attend --sinks 1,x
refuses 'sinks' attend --hq 4 --hkv 2 --sinks 1,2
refuses 'mask.sliding_window' attend --sliding_window -1
"${cli[@]}" load --name swa --variant gqa --d_model 64 --heads 4 --kv_heads 2 \
  --sliding_window 4 --logit_softcap 30 --attention_sinks | grep -q '^swa'
"${cli[@]}" forward --module swa --lq 6 --sliding_window 2 | grep -q 'shape \[1, 6, 64\]'
"${cli[@]}" estimate --variant gqa --d_model 64 --heads 4 --kv_heads 2 --sliding_window 4 \
  --attention_sinks | grep -q '^parameters:'
refuses 'config.sliding_window' estimate --variant mla --d_model 64 --heads 4 --sliding_window 4
"${cli[@]}" load --name mla-il --variant mla --d_model 64 --heads 4 --kv_lora_rank 16 \
  --qk_nope_head_dim 8 --qk_rope_head_dim 4 --v_head_dim 8 --rope_interleave | grep -q '^mla-il'
refuses '--rope_interleave: only for --variant=mla' estimate --variant gqa --rope_interleave
out=$("${cli[@]}" load --name hf3 --variant mha --d_model 64 --heads 4 \
  --file model.safetensors 2>&1) && exit 1
grep -q -- "--model_dir" <<<"$out" || { echo "$out"; exit 1; }

"${cli[@]}" health | grep -qx SERVING   # still serving after all of it
kill -TERM "$pid"
wait "$pid"
echo "cli_binary_test: passed"
