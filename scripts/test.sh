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
# The SASL_SSL listener (SCRAM and PLAIN over TLS) and the certificate its clients trust.
export WATERSHED_KAFKA_SASL_BROKERS="${WATERSHED_KAFKA_SASL_BROKERS:-127.0.0.1:${WATERSHED_KAFKA_SASL_PORT:-9094}}"
export WATERSHED_KAFKA_CA="${WATERSHED_KAFKA_CA:-$ROOT/.local/kafka/tls/ca.pem}"
export WATERSHED_KINESIS_ENDPOINT="${WATERSHED_KINESIS_ENDPOINT:-http://127.0.0.1:${WATERSHED_KINESIS_PORT:-4568}}"
export WATERSHED_S3_ENDPOINT="${WATERSHED_S3_ENDPOINT:-http://127.0.0.1:${WATERSHED_S3_PORT:-9000}}"
export WATERSHED_S3_BUCKET="${WATERSHED_S3_BUCKET:-watershed-test}"
# The lease table server (a second moto, for DynamoDB only).
export WATERSHED_DYNAMODB_ENDPOINT="${WATERSHED_DYNAMODB_ENDPOINT:-http://127.0.0.1:${WATERSHED_DYNAMODB_PORT:-4569}}"
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
# A one-off full build gains nothing from incremental caches, which would add gigabytes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

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

# Rule: a broker restart (`down`, then `up`, as after a crash) keeps Kafka's topics; `up`
# used to re-format the log dir, and pipelines then checkpointed an input that was gone.
brokers_keep_kafka_data() {
  local topic="keep-data-$$-$(date +%s)" dir="$ROOT/.local/kafka/data"
  "$ROOT/target/debug/loadgen" kafka --topic "$topic" --events 10 >/dev/null 2>&1 ||
    { echo "[test.sh] brokers keep data: could not write topic $topic" >&2; return 1; }
  "$ROOT/scripts/brokers" down && "$ROOT/scripts/brokers" up || return 1
  if [[ -d "$dir/$topic-0" ]]; then
    echo "[test.sh] brokers keep data: ok (topic $topic survived down/up)" >&2
  else
    echo "[test.sh] brokers keep data: FAILED (topic $topic is gone after down/up)" >&2
    return 1
  fi
}

started="$(date +%s)"
status=0
# Headless Chromium for the status page's browser test (examples/tests/status_page.rs), and
# the alert rules' unit tests, which also install the Prometheus server that
# examples/tests/prometheus_alerts.rs runs.
"$ROOT/scripts/chromium" >/dev/null || { status=$?; echo "[test.sh] scripts/chromium failed ($status)" >&2; }
"$ROOT/scripts/prometheus" check || { status=$?; echo "[test.sh] scripts/prometheus check failed ($status)" >&2; }
cargo test --workspace --no-fail-fast -- --include-ignored "$@" || status=$?
echo "[test.sh] cargo test exited with $status after $(($(date +%s) - started)) s" >&2
if (($# == 0)); then
  brokers_keep_kafka_data || status=1
fi
exit "$status"
