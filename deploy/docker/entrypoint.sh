#!/bin/bash
# Container entrypoint: runs the egress service under tini.
#
# The config comes from EGRESS_CONFIG_BODY or EGRESS_CONFIG_FILE, read by `egress` itself, as
# the Go egress image does; arguments are passed on (`docker run IMAGE validate` checks a config).
# Unlike the Go image, nothing else is started here: every egress handler starts its own Xvfb
# and PulseAudio server (host/src/pipeline/{display,pulse}.rs), so a shared daemon would only
# sit idle. Work dirs left by a previous run are kept: they may hold a recording not yet
# delivered.
set -euo pipefail

# Each Chrome egress and each shared track handler holds many descriptors (sockets, pipes,
# files); the default soft limit of 1024 is reached by a few dozen track egresses.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

mkdir -p "${EGRESS_TMP_DIR:-/home/egress/tmp}"

# tini is PID 1: SIGTERM reaches the service, which stops bidding and lets recordings finish;
# handlers run in their own process groups and end with their egresses.
exec /usr/bin/tini -- /usr/local/bin/egress "$@"
