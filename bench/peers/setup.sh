#!/usr/bin/env bash
# Installs the official SDKs the stream benchmark compares against:
# lark-oapi in a virtualenv (bench/peers/.venv) and @larksuiteoapi/node-sdk
# in bench/peers/node/node_modules. Exits non-zero if either cannot be had.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --upgrade pip
"$here/.venv/bin/pip" install --quiet -r "$here/python/requirements.txt"
"$here/.venv/bin/python" -c 'import lark_oapi; print("lark-oapi", lark_oapi.__version__ if hasattr(lark_oapi, "__version__") else "installed")'

(cd "$here/node" && npm install --no-audit --no-fund)
node -e 'console.log("@larksuiteoapi/node-sdk", require(process.argv[1] + "/node_modules/@larksuiteoapi/node-sdk/package.json").version)' "$here/node"
