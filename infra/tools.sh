#!/usr/bin/env bash
# Installs the tools the checks run into infra/.cache/tools-venv, each one if it is missing or
# another version, and prints the venv's path:
#   - cfn-lint, which checks template.yaml offline;
#   - cargo-lambda, whose `cargo lambda watch` and `cargo lambda invoke` run the functions in
#     infra/lambda-watch-test.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly CFN_LINT_VERSION=1.58.0
readonly CARGO_LAMBDA_VERSION=1.9.2
readonly VENV=infra/.cache/tools-venv

pip_install() {
    PIP_NO_INPUT=1 "$VENV/bin/pip" install --disable-pip-version-check --quiet "$@" >&2
}

if [[ ! -x "$VENV/bin/pip" ]]; then
    python3 -m venv "$VENV"
fi

if ! "$VENV/bin/cfn-lint" --version 2>/dev/null | grep -q "cfn-lint $CFN_LINT_VERSION"; then
    echo "tools: installing cfn-lint $CFN_LINT_VERSION into $VENV" >&2
    pip_install "cfn-lint==$CFN_LINT_VERSION"
fi

# The wheel contains the prebuilt binary as bin/cargo-lambda. It declares the ziglang package,
# which `cargo lambda build` uses to cross-compile. Watch and invoke do not use it, so
# --no-deps leaves it out.
if ! "$VENV/bin/cargo-lambda" lambda --version 2>/dev/null | grep -q "^cargo-lambda $CARGO_LAMBDA_VERSION "; then
    echo "tools: installing cargo-lambda $CARGO_LAMBDA_VERSION into $VENV" >&2
    pip_install --no-deps "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi

echo "$VENV"
