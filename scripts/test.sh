#!/bin/sh
# Runs every test: installs the external tools the tests drive (dig, kdig, lbcd, dnsperf,
# chromium) when missing, then the unit and integration tests against the release build.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --release "$@"
