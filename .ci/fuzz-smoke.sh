#!/usr/bin/env bash
# A short real fuzz search of every target on the stable toolchain (so without
# a sanitizer). Exits 3 when a target finds a crash: the input is then in
# fuzz/artifacts/<target>/ (printed with how to replay it), and
# `cargo test --test fuzz_corpus` replays it until it is fixed and moved to
# fuzz/corpus/<target>/. Any other failure (cargo-fuzz or the targets do not
# build, a run fails without saving an input) exits with another non-zero code.
#
#   .ci/fuzz-smoke.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-60}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || { echo "cannot install cargo-fuzz" >&2; exit 2; }
fi
cargo fuzz build --sanitizer none || { echo "the fuzz targets do not build" >&2; exit 2; }

targets="$(cargo fuzz list)" || { echo "cannot list the fuzz targets" >&2; exit 2; }
[ -n "$targets" ] || { echo "no fuzz targets found" >&2; exit 2; }

artifacts() {
    if [ -d "fuzz/artifacts/$1" ]; then find "fuzz/artifacts/$1" -type f | sort; fi
}

# Generous per-input limits: a debug-assertion build on a small, shared machine.
for target in $targets; do
    echo "== fuzzing ${target} for ${seconds}s"
    # Fuzz in a scratch copy so the committed seed corpus stays small.
    work="$(mktemp -d)"
    cp -R "fuzz/corpus/${target}/." "${work}/" 2>/dev/null || true
    before="$(artifacts "$target")"
    if ! cargo fuzz run --sanitizer none "${target}" "${work}" -- \
        -max_total_time="${seconds}" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1; then
        rm -rf "${work}"
        new="$(comm -13 <(echo "$before") <(artifacts "$target") | sed '/^$/d')"
        if [ -n "$new" ]; then
            {
                echo "fuzz target ${target} found a crash; the input is saved as:"
                echo "$new" | sed 's/^/    /'
                echo "Replay it:  cargo fuzz run --sanitizer none ${target} <file>   (or: cargo test --test fuzz_corpus)"
                echo "Once the bug is fixed, keep the input as a regression: move it to fuzz/corpus/${target}/ under a name"
                echo "that says what it found (crash-...) and commit it (fuzz/artifacts/ is not committed); cargo test replays it."
            } >&2
            exit 3
        fi
        echo "fuzz target ${target} failed without saving an input: the search did not run" >&2
        exit 2
    fi
    rm -rf "${work}"
done
echo "fuzz smoke: every target ran ${seconds}s without a crash"
