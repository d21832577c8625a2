#!/usr/bin/env bash
# test.sh: installs what the tests need (scripts/install-deps.sh) and runs every test, as root.
# The end-to-end tests run real runc, CRIU and overlayfs; with CI=true a missing prerequisite fails them.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "test.sh: run as root (the tests run containers): sudo $0" >&2; exit 1; }
bash scripts/install-deps.sh
export PATH=$PATH:/usr/local/go/bin
go vet ./...
# -race everywhere: the agent, the API and the cluster are concurrent; the end-to-end tests drive built binaries.
# -p 1: the end-to-end tests time elections and migrations; they should not share the 2 cores with other packages.
go test -race -p 1 -count=1 -timeout 30m "$@" ./...
