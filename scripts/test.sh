#!/usr/bin/env bash
# The project's one test command (README, .ci/run): installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the tests drive as independent readers and clients (haproxy: the scale-out example,
# packaging/haproxy.cfg, run in front of two directors).
missing=()
for tool in openssl curl python3 haproxy; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Python packages (fake cloud servers) live in a project-local virtualenv.
if [ -f tests/support/requirements.txt ]; then
    if [ ! -x target/pyenv/bin/python ]; then
        python3 -m venv target/pyenv
    fi
    target/pyenv/bin/pip install -q --disable-pip-version-check -r tests/support/requirements.txt
    export CONPAAS_TEST_PYTHON="$PWD/target/pyenv/bin/python"
fi

exec cargo test --workspace --locked "$@"
