#!/usr/bin/env bash
# The installed package, as an embedder uses it:
#   1. configures and builds the project with tests and benchmarks off,
#      checks that nothing asks for GoogleTest;
#   2. cmake --install into a temporary prefix; checks what is there (the
#      libraries, headers, the command, the CMake package), that no test,
#      benchmark or internal file is, and that the package names no path of
#      this checkout, the build or the prefix; runs `provisioner --version`;
#   3. builds examples/agent as a project of its own against the prefix
#      (find_package(provisioner 0.1 CONFIG REQUIRED), CMAKE_PREFIX_PATH) and
#      runs it: a Provisioner recovers on a fresh work dir;
#   4. copies the prefix elsewhere and removes the original (relocation):
#      compiles every installed header on its own against the copy, then
#      builds and runs examples/agent against the copy.
# Prints what failed and exits 1 at the first failure; the last line says
# "passed" otherwise.
#
# Everything happens in one temporary build directory, build-install.XXXXXX/
# beside build/, removed at the end. With ccache's paths relative to the
# source root (CCACHE_BASEDIR), the project's compilations then hit the main
# build's cache entries; the prefix and the consumer projects are inside it,
# so their paths relative to where they compile are the same on every run
# and they hit the cache too.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

export CCACHE_BASEDIR="$root"
export CCACHE_NOHASHDIR=1
jobs=$(nproc)
start=$SECONDS

build=$(mktemp -d "$root/build-install.XXXXXX")
trap 'rm -rf "$build"' EXIT
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

fail() {
  echo "install_test: FAILED: $*" >&2
  exit 1
}
# run LOG COMMAND...: runs it with its output in LOG; on failure shows the
# log's end and fails naming the command.
run() {
  local log=$1
  shift
  "$@" >"$log" 2>&1
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    tail -n 60 "$log" >&2
    fail "$* (exit status $rc; the end of its log is above)"
  fi
}

echo "install_test: configure and build, tests and benchmarks off ($build)"
run "$build/configure.log" cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPROV_BUILD_TESTS=OFF -DPROV_BUILD_BENCH=OFF -DPROV_INSTALL=ON
if grep -qi gtest "$build/CMakeCache.txt" "$build/build.ninja"; then
  fail "a build with tests off refers to GoogleTest: $(grep -il gtest "$build/CMakeCache.txt" "$build/build.ninja")"
fi
run "$build/build.log" cmake --build "$build" -- -j"$jobs"

prefix=$build/prefix
echo "install_test: install into $prefix"
run "$build/install.log" cmake --install "$build" --prefix "$prefix"

# What must be there: the six libraries, the command, the package, and
# headers of each kind (generated, nested, configured).
for f in bin/provisioner \
         lib/libprov_actors.a lib/libprov_messages.a lib/libprov_fetcher.a \
         lib/libprov_store.a lib/libprov_backend.a lib/libprov_provisioner.a \
         lib/cmake/provisioner/provisionerConfig.cmake \
         lib/cmake/provisioner/provisionerConfigVersion.cmake \
         lib/cmake/provisioner/provisionerTargets.cmake \
         lib/cmake/provisioner/provisionerSystemLibs.cmake \
         include/provisioner/provisioner.hpp include/provisioner/version.hpp \
         include/actors/runtime.hpp include/actors/impl/future.hpp \
         include/fetcher/impl/retry.hpp include/messages/image.pb.h include/store/store.hpp \
         include/backend/backend.hpp; do
  [[ -e $prefix/$f ]] || fail "not installed: $f"
done
# What must not: tests, benchmarks, fuzzers and their fixtures, and the
# internal headers (each folder's CMakeLists.txt names them).
unwanted=$(cd "$prefix" && find . \( -type f -o -type l \) | grep -Ei 'test|bench|fuzz|gtest')
[[ -z $unwanted ]] || fail "test or benchmark files installed: $unwanted"
for f in actors/runtime_impl.hpp fetcher/json.hpp fetcher/local/util.hpp fetcher/local/docker.hpp \
         fetcher/local/archive.hpp store/paths.hpp store/content_sizes.hpp provisioner/paths.hpp provisioner/container_disk.hpp; do
  [[ ! -e $prefix/include/$f ]] || fail "internal header installed: include/$f"
done
# A relocatable package: nothing in it names this checkout (which holds the
# build and the prefix); each file finds the prefix from where it sits.
if grep -rlF "$root" "$prefix/lib/cmake"; then
  fail "the installed CMake package names an absolute path of this checkout (files above)"
fi
version=$("$prefix/bin/provisioner" --version) || fail "provisioner --version: exit status $?"
[[ $version =~ ^provisioner\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "provisioner --version printed '$version'"
echo "install_test: installed; bin/provisioner --version: $version"

# build_agent PREFIX NAME: examples/agent configured against PREFIX, built
# and run: --version must print the version, and scripts/agent_test.sh
# (tasks in runc, kill -9, restart) must pass with it.
build_agent() {
  local with=$1 name=$2
  local dir=$build/agent-$name
  echo "install_test: examples/agent against $with"
  run "$build/agent-$name-configure.log" cmake -S "$root/examples/agent" -B "$dir" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_PREFIX_PATH="$with" "${launcher[@]}"
  local found
  found=$(sed -n 's/^provisioner_DIR:PATH=//p' "$dir/CMakeCache.txt")
  [[ $found == "$with/lib/cmake/provisioner" ]] || fail "examples/agent found provisioner in '$found', not in $with"
  run "$build/agent-$name-build.log" cmake --build "$dir" -- -j"$jobs"
  local out
  out=$("$dir/agent" --version 2>&1) || fail "examples/agent ($name) --version exited non-zero: $out"
  grep -qxF "$version" <<<"$out" || fail "examples/agent ($name) --version printed '$out', not '$version'"
  if ! out=$(bash "$root/scripts/agent_test.sh" "$dir/agent" "$with/bin/provisioner" 2>&1); then
    echo "$out" >&2
    fail "scripts/agent_test.sh with examples/agent ($name)"
  fi
  echo "$out" | sed 's/^/  /'
}

build_agent "$prefix" installed

# Relocation: the same files at another path, the original gone.
moved=$build/elsewhere/opt/provisioner
mkdir -p "$(dirname "$moved")"
cp -a "$prefix" "$moved" || fail "copying the prefix to $moved"
rm -rf "$prefix"

# Every installed header compiles on its own against the moved prefix: it
# includes only what is installed, and all it uses. (impl/*.hpp hold the
# template definitions of the header that includes them at its end; they
# are compiled through it.)
echo "install_test: each installed header on its own, against $moved"
headers=$build/headers
mkdir -p "$headers/src"
count=0
while IFS= read -r h; do
  echo "#include \"$h\"" >"$headers/src/$(echo "$h" | tr '/.' '__').cpp"
  count=$((count + 1))
done < <(cd "$moved/include" && find . -type f \( -name '*.hpp' -o -name '*.h' \) -not -path '*/impl/*' |
           sed 's|^\./||' | sort)
cat >"$headers/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.25)
project(provisioner_headers LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
find_package(provisioner 0.1 CONFIG REQUIRED)
file(GLOB sources ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cpp)
add_library(headers OBJECT ${sources})
target_link_libraries(headers PRIVATE provisioner::provisioner)
EOF
run "$build/headers-configure.log" cmake -S "$headers" -B "$headers/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_PREFIX_PATH="$moved" "${launcher[@]}"
run "$build/headers-build.log" cmake --build "$headers/build" -- -j"$jobs" -k 0
echo "install_test: $count installed headers compile on their own"

build_agent "$moved" relocated

echo "install_test: passed in $((SECONDS - start)) s ($count headers; examples/agent from the prefix and a moved copy)"
