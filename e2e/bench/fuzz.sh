#!/usr/bin/env bash
# Bounded fuzzing of every target in fuzz/ (cargo-fuzz, nightly): SECONDS per target (default
# 60). Not part of CI's critical path; run it like a benchmark. New inputs go to a scratch
# corpus under fuzz/corpus/ (ignored by git), seeded from the committed fuzz/seeds/; a crash
# leaves its input in fuzz/artifacts/TARGET/ and the script exits non-zero. Turn every crash
# into a regression test in the normal suite.
#
#   e2e/bench/fuzz.sh [SECONDS] [TARGET...]
#
# Environment: FUZZ_SANITIZER (default `none`: the workspace forbids unsafe code, and without
# a sanitizer the build is quicker and the run several times faster; `address` for ASan),
# FUZZ_JOBS (default 1).
set -euo pipefail

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root/fuzz"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

sanitizer="${FUZZ_SANITIZER:-none}"
failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    if ! cargo +nightly fuzz run --sanitizer "$sanitizer" --jobs "${FUZZ_JOBS:-1}" "$target" \
        "corpus/$target" "seeds/$target" -- -max_total_time="$seconds" -max_len=65536 \
        -print_final_stats=1; then
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]}"
