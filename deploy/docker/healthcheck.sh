#!/bin/bash
# Docker HEALTHCHECK: GET / on the service's health_port, healthy on 200 (503 while draining,
# starting or cut off from Redis). The port is EGRESS_HEALTH_PORT, else the top-level
# `health_port:` of the config (EGRESS_CONFIG_BODY, else EGRESS_CONFIG_FILE). With no health
# port configured there is nothing to ask, and the container counts as healthy.
# Written with bash's /dev/tcp so that the image needs no HTTP client.
set -uo pipefail

port=${EGRESS_HEALTH_PORT:-}
if [[ -z $port ]]; then
    config=${EGRESS_CONFIG_BODY:-}
    if [[ -z $config && -n ${EGRESS_CONFIG_FILE:-} && -r ${EGRESS_CONFIG_FILE} ]]; then
        config=$(<"$EGRESS_CONFIG_FILE")
    fi
    port=$(sed -n 's/^health_port:[[:space:]]*\([0-9][0-9]*\).*/\1/p' <<<"$config" | head -n 1)
fi
[[ -z $port || $port == 0 ]] && exit 0

exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
read -r -t 4 status_line <&3 || exit 1
[[ $status_line == *" 200 "* ]]
