#!/bin/sh
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each (default 30),
# starting from the checked-in seeds (fuzz/seeds/<target>) and the corpus earlier runs grew
# (fuzz/corpus/<target>, not checked in). Fails on the first crash, leak or timeout; its input
# is in fuzz/artifacts/<target>/. Needs the nightly toolchain; installs cargo-fuzz if missing.
#
#     scripts/fuzz.sh            # 30 s each, as .ci/run does
#     scripts/fuzz.sh 3600 query # one target for an hour
set -eu
cd "$(dirname "$0")/../fuzz"
seconds=${1:-30}
shift 2>/dev/null || true
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
targets=${*:-$(cargo +nightly fuzz list)}
cargo +nightly fuzz build
for target in $targets; do
    mkdir -p "corpus/$target"
    echo "== fuzz $target for ${seconds}s"
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or a blow-up.
    cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
