#!/usr/bin/env bash
# The example plugin package, as a user would get it: build invoicesync's and
# the plugin's wheels, install both into a fresh virtual environment, and run
# the plugin's own tests there (unit tests, the connector conformance suite and
# an end-to-end `invoicesync sync` through the plugin). Also type-checks it.
# Called by .ci/run after the test venv exists; PYTHON names its python (.venv-test).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
EXAMPLE=examples/invoicesync-paperless
WORK=$(mktemp -d /tmp/invoicesync-paperless-ci.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

"$PY" -m build --wheel --outdir "$WORK/dist" . >/dev/null
"$PY" -m build --wheel --outdir "$WORK/dist" "$EXAMPLE" >/dev/null
python3 -m venv "$WORK/venv"
# The wheels by path: nothing named invoicesync may come from an index instead.
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check \
  "$WORK"/dist/invoicesync-*.whl "$WORK"/dist/invoicesync_paperless-*.whl "pytest>=8,<10"

"$WORK/venv/bin/invoicesync" plugins --json | "$WORK/venv/bin/python" -c '
import json, sys
plugins = {p["name"]: p for p in json.load(sys.stdin)}
assert plugins["paperless"]["targets"] == ["paperless"], plugins
print("installed wheel registers:", plugins["paperless"])'

# Run the tests from a copy, so that nothing imports the source tree instead
# of the installed wheel.
cp -r "$EXAMPLE/tests" "$EXAMPLE/pyproject.toml" "$WORK/"
(cd "$WORK" && CI=true "$WORK/venv/bin/python" -m pytest -q tests)

# Typed like the core: mypy sees the installed names through scripts/typecheck's tree.
PYTHON="$PY" scripts/typecheck >/dev/null
MYPYPATH=.mypy-src "$PY" -m mypy --strict --namespace-packages --explicit-package-bases \
  "$EXAMPLE/src/invoicesync_paperless"
