#!/usr/bin/env bash
# Runs everything CI checks, on a fresh machine too: installs and starts DynamoDB Local and moto
# on 127.0.0.1 (infra/emulators.sh), then formatting, the template checks, clippy, the functions
# under `cargo lambda watch`, and every test of the workspace. The functions' release builds and
# sizes are a benchmark (infra/function-sizes.sh, docs/benchmarks.md): they take several minutes.
# Emulators this script started are stopped at the end; ones already running are left alone.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

started_here=0
if ! infra/emulators.sh status >/dev/null 2>&1; then
    started_here=1
fi
stop_emulators() {
    if [[ "$started_here" -eq 1 ]]; then
        infra/emulators.sh stop >/dev/null 2>&1 || true
    fi
}
trap stop_emulators EXIT

infra/emulators.sh start
eval "$(infra/emulators.sh env)"

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== domain crate dependencies"
# The domain core stays pure: no AWS SDK, Lambda runtime, HTTP client or server, or async runtime.
forbidden=$(cargo tree -p fieldsync-core -e normal --prefix none --locked | awk '{print $1}' | grep -E '^(aws-|aws_|lambda|reqwest|hyper|tokio)' | sort -u || true)
if [[ -n "$forbidden" ]]; then
    echo "fieldsync-core must not depend on: $forbidden" >&2
    exit 1
fi

echo "== template.yaml"
tools=$(infra/tools.sh)
"$tools/bin/cfn-lint" template.yaml
"$tools/bin/python" infra/check_template.py template.yaml

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo lambda watch"
infra/lambda-watch-test.sh

echo "== cargo test"
log=$(mktemp)
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# cargo prints one result line per test binary, so the total goes on a closing line of its own.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
rm -f "$log"
exit "$status"
