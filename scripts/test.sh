#!/bin/sh
# Runs every test: installs the external tools the tests drive (dig, kdig, lbcd, dnsperf,
# chromium) when missing, then the unit and integration tests against the release build,
# built with the `xdp` feature so the AF_XDP tests (tests/it/xdp.rs, root) run too.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --release --features xdp "$@"
