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
# The whole suite runs twice: on SQLite, then on PostgreSQL (a fresh database per test server,
# made through CHIMEPROXY_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test).
# Without a reachable PostgreSQL the second pass is skipped on a developer machine; in CI it fails.
status=0
echo "== test pass 1 of 2: SQLite =="
.venv/bin/python -m pytest -n auto "$@" || status=$?
echo "== test pass 2 of 2: PostgreSQL =="
if reason=$(.venv/bin/python -c 'import sys; from chimeproxy.testing import postgres_unavailable as u; r = u(); print(r or ""); sys.exit(1 if r else 0)'); then
  CHIMEPROXY_TEST_DATABASE=postgresql .venv/bin/python -m pytest -n auto "$@" || status=$?
elif [ "${CI:-}" = "true" ]; then
  echo "PostgreSQL pass cannot run in CI: $reason" >&2
  status=1
else
  echo "PostgreSQL pass skipped: $reason"
fi
exit "$status"
