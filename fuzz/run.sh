#!/bin/sh
# Fuzz the compiled core under AddressSanitizer + UBSan, away from the in-place build.
#
#   fuzz/run.sh [decode] [replay]      (make fuzz; FUZZ_RUNS=N, default 1000000 per harness;
#                                       FUZZ_JOBS=J processes share them and one corpus;
#                                       FUZZ_WORK=dir, default build/fuzz; FUZZ_COMPILER=gcc)
#
# 1. Copies ext/, src/, setup.py and pyproject.toml to $FUZZ_WORK (default build/fuzz) and
#    builds surestep._core there with SURESTEP_SANITIZE=1, so the tree's own build is
#    untouched.
# 2. With clang and its compiler-rt (Debian: clang-14 libclang-rt-14-dev), the core is also
#    built with -fsanitize=fuzzer-no-link and run with a preloaded ASan runtime merged with
#    libFuzzer (what atheris's own setup does), so libFuzzer sees the core's C coverage.
#    Without clang (or with FUZZ_COMPILER=gcc) it builds with gcc and preloads gcc's
#    libasan: memory errors are still caught, but libasan's own coverage callbacks shadow
#    libFuzzer's, so no coverage at all reaches it (atheris warns): random inputs only.
# 3. Runs fuzz/run.py for each harness with PYTHONMALLOC=malloc (so ASan sees every Python
#    buffer, not pymalloc arenas), halting on the first UBSan report not listed in
#    fuzz/ubsan.supp. Any crash, sanitizer report or failed invariant stops the run with a
#    non-zero exit and leaves the input in $FUZZ_WORK/artifacts/.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
case $py in /*) ;; */*) py=$PWD/$py ;; esac  # it runs from other directories too
runs=${FUZZ_RUNS:-1000000}
jobs=${FUZZ_JOBS:-1}
work=${FUZZ_WORK:-$root/build/fuzz}
harnesses=${*:-decode replay}

rm -rf "$work/tree"
mkdir -p "$work/tree"
cp -R "$root/ext" "$root/src" "$root/setup.py" "$root/pyproject.toml" "$work/tree/"
[ -f "$root/README.md" ] && cp "$root/README.md" "$work/tree/"
find "$work/tree" \( -name '*.so' -o -name '*.egg-info' -o -name '_core.c' \) -prune \
    -exec rm -rf {} +

clang=
for cc in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
    if command -v "$cc" >/dev/null 2>&1; then clang=$cc; break; fi
done
[ "${FUZZ_COMPILER:-}" = gcc ] && clang=  # force the gcc build
rt=
if [ -n "$clang" ]; then
    rt=$(dirname "$("$clang" -print-file-name=libclang_rt.asan-x86_64.a)")
    [ -f "$rt/libclang_rt.fuzzer_no_main-x86_64.a" ] || rt=
fi

if [ -n "$rt" ]; then
    echo "== building with $clang: ASan + UBSan + libFuzzer coverage of the core"
    cxx=$(echo "$clang" | sed 's/clang/clang++/')
    cp "$rt/libclang_rt.asan-x86_64.a" "$work/asan.a"
    ar d "$work/asan.a" $(ar t "$work/asan.a" | grep preinit)
    "$cxx" -shared -o "$work/asan_with_fuzzer.so" -Wl,--whole-archive \
        "$rt/libclang_rt.fuzzer_no_main-x86_64.a" "$work/asan.a" -Wl,--no-whole-archive \
        -lpthread -ldl
    preload="$work/asan_with_fuzzer.so"
    (cd "$work/tree" && CC="$clang" LDSHARED="$clang -shared" \
        CFLAGS="-fsanitize=fuzzer-no-link" SURESTEP_SANITIZE=1 \
        "$py" setup.py -q build_ext --inplace)
else
    echo "== no clang with compiler-rt: building with gcc (ASan + UBSan)"
    echo "== WARNING: no coverage reaches libFuzzer this way; install clang for guided fuzzing"
    preload=$(gcc -print-file-name=libasan.so)
    (cd "$work/tree" && SURESTEP_SANITIZE=1 "$py" setup.py -q build_ext --inplace)
fi

so=$(ls "$work"/tree/src/surestep/_core*.so)
if ! nm -D "$so" | grep -q __asan_report; then
    echo "error: $so is not instrumented by AddressSanitizer" >&2
    exit 1
fi

fuzz_one() {  # harness, inputs
    env LD_PRELOAD="$preload" PYTHONMALLOC=malloc PYTHONPATH="$work/tree/src" \
        FUZZ_EXPECT_CORE="$work/tree/src" \
        ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1" \
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$root/fuzz/ubsan.supp" \
        "$py" "$root/fuzz/run.py" "$1" -runs="$2" -print_final_stats=1 \
        -rss_limit_mb=4096 -artifact_prefix="$work/artifacts/$1-" "$work/corpus-$1"
}

for name in $harnesses; do
    mkdir -p "$work/corpus-$name" "$work/artifacts"
    per=$(( (runs + jobs - 1) / jobs ))
    echo "== fuzzing $name: $runs inputs ($jobs process(es) of $per on one corpus)"
    pids=
    i=1
    while [ "$i" -le "$jobs" ]; do
        if [ "$jobs" -gt 1 ]; then
            fuzz_one "$name" "$per" >"$work/$name-$i.log" 2>&1 &
        else  # on this script's own output (a redirection to /dev/stdout would truncate it)
            fuzz_one "$name" "$per" 2>&1 &
        fi
        pids="$pids $!"
        i=$((i + 1))
    done
    failed=0
    for pid in $pids; do wait "$pid" || failed=1; done
    if [ "$failed" -ne 0 ]; then
        logs=; [ "$jobs" -gt 1 ] && logs=" and $work/$name-*.log"
        echo "fuzzing $name found something: see $work/artifacts/$logs" >&2
        exit 1
    fi
    if [ "$jobs" -gt 1 ]; then
        grep -h "stat::number_of_executed_units" "$work/$name"-*.log
    fi
done
