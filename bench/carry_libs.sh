#!/usr/bin/env bash
# Copies attention_bench and the shared libraries it loads (oneDNN, Abseil,
# libgomp... from this Debian machine) into DIR, for a machine where nothing
# can be installed (the device machine):
#   bench/carry_libs.sh out/carry
#   (there) LD_LIBRARY_PATH=out/carry/lib out/carry/attention_bench
#           python3 bench/anchors.py --bench out/carry/attention_bench --threads 2,16
set -euo pipefail
dir=${1:?usage: bench/carry_libs.sh DIR}
bin=${BENCH:-build/bin/attention_bench}
mkdir -p "$dir/lib"
cp "$bin" "$dir/"
# Everything ldd resolves except the C runtime and loader, which the other
# machine has in a compatible version.
ldd "$bin" | awk '/=> \// {print $3}' | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;
    *) cp -L "$lib" "$dir/lib/" ;;
  esac
done
du -sh "$dir"
