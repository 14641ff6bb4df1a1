#!/usr/bin/env bash
# The whole test suite, from a fresh machine:
#   1. scripts/setup.sh installs any missing Debian package; every C++ file
#      must be as clang-format (14, .clang-format) writes it;
#   2. build/          (RelWithDebInfo) builds everything and runs every test,
#                      then a short crash soak (bench_soak, 60 kill -9 trials),
#                      scripts/demo.sh (the README's first command) and
#                      scripts/install_test.sh (install into a temporary
#                      prefix, build examples/agent against it);
#   3. build-address/  AddressSanitizer + UndefinedBehaviorSanitizer + leak
#                      checks: the runtime's, backends', fetcher's, store's and provisioner's
#                      tests (the fetcher's against the fake registry);
#   4. build-thread/   ThreadSanitizer: the same tests;
#   5. build-fuzz/     clang + libFuzzer: each fuzz target for PROV_FUZZ_SECONDS
#                      (default 20) from its seed corpus in fuzz/corpus/.
# Prints ctest's summary for each, then one total line; exits non-zero when
# anything failed to build or any test failed.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || { echo "error: scripts/setup.sh failed" >&2; exit 1; }

# ccache hits across clones (CI clones into another folder each run):
# paths relative to the source root, and the build directory kept out of
# the hash (RelWithDebInfo's -g would put it in).
export CCACHE_BASEDIR="$PWD"
export CCACHE_NOHASHDIR=1
jobs=$(nproc)
total_passed=0
total_failed=0
status=0
exclude=""  # ctest -E for the suites below; set before the sanitized ones

# run_suite LABEL BUILD_DIR TEST_REGEX "TARGET..." [cmake args...]
run_suite() {
  local label=$1 dir=$2 regex=$3 target=$4
  shift 4
  echo "== $label: configure and build ($dir)"
  mkdir -p "$dir"
  if ! cmake -S . -B "$dir" -G Ninja "$@" >"$dir/cmake.log" 2>&1; then
    cat "$dir/cmake.log" >&2
    echo "error: $label: cmake failed" >&2
    status=1
    return
  fi
  # shellcheck disable=SC2086 # several targets
  if ! cmake --build "$dir" --target $target -- -j"$jobs" >"$dir/build.log" 2>&1; then
    tail -n 60 "$dir/build.log" >&2
    echo "error: $label: build failed (full log: $dir/build.log)" >&2
    status=1
    return
  fi
  echo "== $label: test"
  local out
  out=$(ctest --test-dir "$dir" --output-on-failure -j"$jobs" ${regex:+-R "$regex"} ${exclude:+-E "$exclude"} 2>&1)
  local rc=$?
  if [[ $rc -eq 0 ]]; then
    echo "$out" | grep -E -A200 '^[0-9]+% tests passed' || echo "$out" | tail -n 40
  else
    echo "$out" | tail -n 400  # the failing tests' output, then the summary
  fi
  local line passed failed
  line=$(echo "$out" | grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' | tail -n 1)
  if [[ -n $line ]]; then
    failed=$(echo "$line" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
    passed=$(( $(echo "$line" | sed -E 's/.* out of ([0-9]+).*/\1/') - failed ))
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
  else
    echo "error: $label: ctest ran no test" >&2
    status=1
  fi
  [[ $rc -eq 0 ]] || status=1
}

# Formatting, first: it takes a second. To fix, run
#   git ls-files -z '*.cpp' '*.hpp' | xargs -0 clang-format -i
echo "== format"
mkdir -p build
if git ls-files -z '*.cpp' '*.hpp' | xargs -0 clang-format --dry-run -Werror >build/format.log 2>&1; then
  echo "clang-format: every file as .clang-format says"
  total_passed=$((total_passed + 1))
else
  head -n 60 build/format.log
  echo "error: clang-format: $(grep -c 'error:' build/format.log) places differ; fix with:" \
       "git ls-files -z '*.cpp' '*.hpp' | xargs -0 clang-format -i" >&2
  total_failed=$((total_failed + 1))
fi

run_suite "main" build "" all \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPROV_SANITIZE= -DPROV_BUILD_BENCH=ON

# The crash soak, short: 60 children killed with SIGKILL at random moments,
# each recovering and checking the invariants (bench/soak_bench.cpp).
echo "== soak"
if [[ -x build/bin/bench_soak ]] && build/bin/bench_soak --trials=60 --dir="$PWD/build/soak" >build/soak.log 2>&1; then
  tail -n 1 build/soak.log
  total_passed=$((total_passed + 1))
else
  grep -v '^op ' build/soak.log 2>/dev/null | tail -n 40
  echo "error: bench_soak found violations or did not run (log: build/soak.log)" >&2
  total_failed=$((total_failed + 1))
fi

# The README's first command, as a newcomer runs it: exit 0 when it worked.
echo "== demo"
if bash scripts/demo.sh >build/demo.log 2>&1; then
  echo "scripts/demo.sh: exit 0"
  total_passed=$((total_passed + 1))
else
  tail -n 40 build/demo.log
  echo "error: scripts/demo.sh failed (log: build/demo.log)" >&2
  total_failed=$((total_failed + 1))
fi

# The installed package, as an embedder uses it: a tests-off build installed
# into a temporary prefix, every installed header compiled on its own, and
# examples/agent built and run against the prefix and a moved copy of it.
echo "== install"
if bash scripts/install_test.sh >build/install.log 2>&1; then
  tail -n 1 build/install.log
  total_passed=$((total_passed + 1))
else
  tail -n 40 build/install.log
  echo "error: scripts/install_test.sh failed (log: build/install.log)" >&2
  total_failed=$((total_failed + 1))
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
sanitized_tests='^(actors|backend|fetcher|store|provisioner)\.'
# The every-N disk fault sweeps run in the main build only (the small
# DiskFaultTest ones run here too).
exclude='(Store|Provisioner)FaultTest\.'
sanitized_targets="actors_tests backend_tests fetcher_tests store_tests provisioner_tests"
run_suite "address sanitizer" build-address "$sanitized_tests" "$sanitized_targets" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPROV_SANITIZE=address -DPROV_BUILD_BENCH=OFF
run_suite "thread sanitizer" build-thread "$sanitized_tests" "$sanitized_targets" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPROV_SANITIZE=thread -DPROV_BUILD_BENCH=OFF

# Fuzzers: each libFuzzer target runs for a short, bounded time from its seed
# corpus (copied, so the repository's corpus stays as it is); a crash fails.
fuzz_seconds=${PROV_FUZZ_SECONDS:-20}
echo "== fuzzers: configure and build (build-fuzz)"
mkdir -p build-fuzz
if cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
     -DPROV_BUILD_FUZZERS=ON -DPROV_SANITIZE=address -DPROV_BUILD_TESTS=OFF -DPROV_BUILD_BENCH=OFF \
     >build-fuzz/cmake.log 2>&1 &&
   cmake --build build-fuzz -- -j"$jobs" >build-fuzz/build.log 2>&1; then
  for target in reference manifest www_authenticate policy payload extract; do
    corpus=$(mktemp -d)
    cp -r "fuzz/corpus/$target/." "$corpus/"
    if UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$(pwd)/fuzz/ubsan.supp" \
       build-fuzz/bin/fuzz_$target -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
         -print_final_stats=0 "$corpus" >"build-fuzz/fuzz_$target.log" 2>&1; then
      echo "fuzz_$target: ${fuzz_seconds} s, no crash"
      total_passed=$((total_passed + 1))
    else
      tail -n 60 "build-fuzz/fuzz_$target.log"
      echo "error: fuzz_$target crashed (log: build-fuzz/fuzz_$target.log; reproducer: crash-* in $(pwd))" >&2
      total_failed=$((total_failed + 1))
    fi
    rm -rf "$corpus"
  done
else
  tail -n 60 build-fuzz/build.log build-fuzz/cmake.log >&2
  echo "error: fuzzers: build failed" >&2
  status=1
fi

echo "== total"
echo "$total_passed passed, $total_failed failed"
[[ $total_failed -eq 0 ]] || status=1
exit $status
