#!/usr/bin/env bash
# Builds the four Lambda functions with the release profile (stripped, thin LTO, see the
# workspace Cargo.toml) and prints each binary's size, the figure docs/benchmarks.md reports.
# The build is for this machine's target; `sam build` cross-compiles the same code for Lambda
# with cargo-lambda, so sizes there differ by the architecture only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly FUNCTIONS=(ecommerce-webhook erp-webhook reconciler subscription-renewer)

packages=()
for function in "${FUNCTIONS[@]}"; do
    packages+=(-p "$function")
done
cargo build --release --locked "${packages[@]}"

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
triple=$(rustc -vV | awk '/^host:/ { print $2 }')
for function in "${FUNCTIONS[@]}"; do
    binary="$target_dir/release/$function"
    # A stripped binary has no symbol table, so nm (from binutils, beside gcc) lists nothing.
    if ! nm "$binary" 2>&1 | grep -q "no symbols"; then
        echo "function sizes: $binary still has its symbol table" >&2
        exit 1
    fi
    bytes=$(stat -c %s "$binary")
    mebibytes=$(python3 -c "print(f'{$bytes / 1048576:.1f}')")
    printf 'function size: %-18s %5s MiB (%d bytes, %s, stripped)\n' "$function" "$mebibytes" "$bytes" "$triple"
done
