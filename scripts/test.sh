#!/usr/bin/env bash
# The one test command: start the real local brokers, run every test of the
# workspace including the broker tests (marked #[ignore] so that a plain
# `cargo test --workspace` works without brokers), stop the brokers even when the
# tests fail, and exit with the tests' exit code.
#
#   scripts/test.sh              all tests
#   scripts/test.sh kafka        only tests whose name matches "kafka" (libtest filter)
#
# WATERSHED_KEEP_BROKERS=1 leaves the brokers running afterwards (for re-runs).
# See docs/local-brokers.md for the services, ports and environment variables.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Where the tests find the brokers (the tests default to the same values).
export WATERSHED_KAFKA_BROKERS="${WATERSHED_KAFKA_BROKERS:-127.0.0.1:${WATERSHED_KAFKA_PORT:-9092}}"
export WATERSHED_KINESIS_ENDPOINT="${WATERSHED_KINESIS_ENDPOINT:-http://127.0.0.1:${WATERSHED_KINESIS_PORT:-4568}}"
export WATERSHED_S3_ENDPOINT="${WATERSHED_S3_ENDPOINT:-http://127.0.0.1:${WATERSHED_S3_PORT:-9000}}"
export WATERSHED_S3_BUCKET="${WATERSHED_S3_BUCKET:-watershed-test}"
# The bucket the tests use must be one that `scripts/brokers up` creates.
export WATERSHED_S3_BUCKETS="${WATERSHED_S3_BUCKETS:-$WATERSHED_S3_BUCKET}"
# Static, fake credentials: the local servers accept any, and a developer's real
# AWS credentials or profile must never reach a test.
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_PROFILE

# shellcheck disable=SC2317 # called by the EXIT trap below
stop_brokers() {
  if [[ "${WATERSHED_KEEP_BROKERS:-0}" == 1 ]]; then
    echo "[test.sh] WATERSHED_KEEP_BROKERS=1: brokers left running (scripts/brokers down)" >&2
    return
  fi
  "$ROOT/scripts/brokers" down || echo "[test.sh] warning: scripts/brokers down failed" >&2
}
# EXIT covers normal ends and `set -e` failures; turning INT/TERM into an exit makes
# Ctrl-C and a CI timeout stop the brokers too.
trap stop_brokers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$ROOT/scripts/brokers" up

started="$(date +%s)"
status=0
cargo test --workspace --no-fail-fast -- --include-ignored "$@" || status=$?
echo "[test.sh] cargo test exited with $status after $(($(date +%s) - started)) s" >&2
exit "$status"
