#!/usr/bin/env bash
# Install the test dependencies into .venv and run the whole test suite against real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
# The older boto3 `chime` client (removed from newer boto3) lives in its own environment.
if [ ! -x .venv-legacy/bin/python ]; then
  python3 -m venv .venv-legacy
  .venv-legacy/bin/python -m pip install --quiet 'boto3==1.34.162'
fi
# The AWS SDK for JavaScript v3, for the cross-SDK compatibility test (needs Node.js 18+).
if command -v npm >/dev/null && [ ! -d tests/js/node_modules/@aws-sdk/client-chime-sdk-voice ]; then
  (cd tests/js && npm install --silent --no-audit --no-fund)
fi
export CHIMEPROXY_LEGACY_PYTHON="$PWD/.venv-legacy/bin/python"
exec .venv/bin/python -m pytest -n auto "$@"
