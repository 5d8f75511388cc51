#!/usr/bin/env bash
# The demo: set-up, then Kafka + a worker + the HTTP collector + a time-compressed day of synthetic shoppers
# (browsers and apps send with the Segment SDK through the collector); triggers are
# printed as they arrive, then a summary; the collector, the worker and the broker are stopped by pid at the end.
# Extra arguments go to `streamcdp demo` (e.g. --customers 300 --seconds 60).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
# the demo runs with the development token and PII hash key (streams/security.py refuses them otherwise)
export STREAMCDP_ENV="${STREAMCDP_ENV:-dev}"
# every kind holds 20 % of its customers out (triggers.holdout), so the closing report measures uplift
export STREAMCDP_TRIGGER_HOLDOUT_SHARES="${STREAMCDP_TRIGGER_HOLDOUT_SHARES:-*:0.2}"
exec .venv/bin/streamcdp demo "$@"
