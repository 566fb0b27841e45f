#!/usr/bin/env bash
# Installs cfn-lint, which checks template.yaml offline, into infra/.cache/tools-venv if it is
# missing or another version, and prints the venv's path.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly CFN_LINT_VERSION=1.58.0
readonly VENV=infra/.cache/tools-venv

if ! "$VENV/bin/cfn-lint" --version 2>/dev/null | grep -q "cfn-lint $CFN_LINT_VERSION"; then
    echo "tools: installing cfn-lint $CFN_LINT_VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    PIP_NO_INPUT=1 "$VENV/bin/pip" install --disable-pip-version-check --quiet "cfn-lint==$CFN_LINT_VERSION" >&2
fi
echo "$VENV"
