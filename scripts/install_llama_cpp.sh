#!/usr/bin/env bash
# llama.cpp from the package registry, for GGUF export (export.py --format=gguf_*) and chat.py --gguf, on a
# machine that reaches PyPI but not GitHub (offline or cluster machines), and for the tests. On a connected GPU box
# you do not need it: export.py --allow_llama_cpp_download=true lets Unsloth fetch and build its own.
#
#   bash scripts/install_llama_cpp.sh      # into $UNSLOTH_LLAMA_CPP_PATH, else ~/.unsloth/llama.cpp (where Unsloth looks)
#
# The llama-cpp-python sdist (VERSION below; LLAMA_CPP_SDIST=FILE takes one already downloaded) carries a whole
# llama.cpp under vendor/llama.cpp. This copies it where Unsloth looks (the converter with conversion/ and gguf-py/),
# builds llama-quantize and llama.cpp's shared libraries there once (cmake and a C++ compiler; the build time on
# 2 cores is in BENCHMARKS.md), then installs llama-cpp-python into the active Python on those same libraries,
# so nothing is compiled twice. Nothing is built inside the checkout. Run again, it checks and does nothing.
set -euo pipefail
VERSION=0.3.36
DEST="${UNSLOTH_LLAMA_CPP_PATH:-$HOME/.unsloth/llama.cpp}"
PYTHON="${PYTHON:-python}"
STAMP="llama-cpp-python==$VERSION"
BUILD="$STAMP, no AMX"  # what INSTALLED_BY_PROJECT says: a folder built otherwise is built again
start=$SECONDS

built() {  # this version's llama.cpp, with a quantizer that answers (as Unsloth judges it: a usage line)
  local usage
  usage=$("$DEST/llama-quantize" --help 2>&1 || true)
  [ "$(cat "$DEST/INSTALLED_BY_PROJECT" 2>/dev/null)" = "$BUILD" ] && [[ "${usage,,}" == *usage* ]] &&
    [ -e "$DEST/build/bin/libllama.so" ]
}
binding_lib() {  # where llama-cpp-python loads its libraries from, in this Python
  "$PYTHON" -c "import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec('llama_cpp').origin), 'lib'))"
}
working() {  # built, and llama_cpp importable in this Python on its libraries (copies of this build's, not older ones)
  built && "$PYTHON" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null &&
    cmp -s "$DEST/build/bin/libggml-cpu.so" "$(binding_lib)/libggml-cpu.so"
}
if working; then
  echo "llama.cpp ($STAMP) is installed in $DEST, and llama_cpp imports: nothing to do"
  exit 0
fi
for tool in cmake c++; do
  command -v "$tool" >/dev/null || { echo "install_llama_cpp.sh: error: needs $tool (apt install cmake g++)" >&2; exit 1; }
done
if [ -e "$DEST" ] && [ ! -f "$DEST/INSTALLED_BY_PROJECT" ]; then
  echo "install_llama_cpp.sh: error: $DEST holds a llama.cpp this script did not install; remove it, or set" \
       "UNSLOTH_LLAMA_CPP_PATH to another folder (export.py reads the same variable)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work" "$DEST.partial"' EXIT
sdist="${LLAMA_CPP_SDIST:-}"
if [ -z "$sdist" ]; then
  echo "downloading the $STAMP sdist (77 MB) ..."
  "$PYTHON" -m pip download -q --no-deps --no-binary :all: "$STAMP" -d "$work"
  sdist=$(ls "$work"/llama_cpp_python-*.tar.gz)
fi
tar xzf "$sdist" -C "$work"
src=$(ls -d "$work"/llama_cpp_python-*/)

if built; then  # another Python (a new venv): only llama-cpp-python is missing
  echo "llama.cpp ($STAMP) is built in $DEST already"
else
  rm -rf "$DEST.partial" && mkdir -p "$(dirname "$DEST")"
  cp -r "$src/vendor/llama.cpp" "$DEST.partial"
  echo "building llama-quantize and llama.cpp's libraries in $DEST/build (a few minutes) ..."
  # No AMX kernels on x86: on a Xeon whose CPU reports AMX-INT8, this llama.cpp's AMX matrix product crashed the
  # process on the first batch of more than one token of a q8_0 or q4_k_m file (docs/gguf.md); without them the
  # AVX-512 kernels run. Explicit -mno-amx-* flags win over the -march=native that llama.cpp adds.
  flags=""
  if [ "$(uname -m)" = x86_64 ] && echo | c++ -mno-amx-int8 -x c++ -E - >/dev/null 2>&1; then
    flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  fi
  # $ORIGIN paths, so the binary and libraries still find each other once the folder is moved into place.
  cmake -S "$DEST.partial" -B "$DEST.partial/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >"$work/cmake.log" 2>&1 ||
    { tail -20 "$work/cmake.log" >&2; exit 1; }
  cmake --build "$DEST.partial/build" --target llama-quantize -j "$(nproc)" >"$work/build.log" 2>&1 ||
    { tail -20 "$work/build.log" >&2; exit 1; }
  find "$DEST.partial/build" -name '*.o' -delete  # the objects are hundreds of MB; the binary and .so files stay
  ln -s build/bin/llama-quantize "$DEST.partial/llama-quantize"  # where Unsloth's check_llama_cpp looks
  echo "$BUILD" >"$DEST.partial/INSTALLED_BY_PROJECT"
  rm -rf "$DEST" && mv "$DEST.partial" "$DEST"
fi

echo "installing llama-cpp-python $VERSION on those libraries ..."
CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" "$PYTHON" -m pip install -q "$sdist"
lib=$(binding_lib)
mkdir -p "$lib" && cp -P "$DEST"/build/bin/*.so* "$lib"/
working || { echo "install_llama_cpp.sh: error: installed, but the check failed: run it again to see why" >&2; exit 1; }
echo "llama.cpp ($STAMP) installed in $DEST in $((SECONDS - start)) s: converter, llama-quantize, and llama_cpp in $PYTHON"
