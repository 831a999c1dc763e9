#!/usr/bin/env bash
# Installs what the gateway needs (with --test or --bench, what its tests need; with --unit, only npm packages), then builds.
# Safe to run again: it only installs what is missing and rebuilds incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-run}
debs=()
have() { command -v "$1" >/dev/null 2>&1; }

# --unit: the unit tests need nothing but Node.
if [ "$mode" != --unit ]; then
  have docker-registry || have registry || debs+=(docker-registry)
fi
if [ "$mode" = --test ] || [ "$mode" = --bench ]; then
  have skopeo || debs+=(skopeo)
  have htpasswd || debs+=(apache2-utils)
  have openssl || debs+=(openssl)
  # curl checks the local CA's name constraints and follows the plain-HTTP redirect in the tests.
  have curl || debs+=(curl)
  # Real object stores for the storage tests (OpenStack Swift with its S3 API) and compose validation.
  have docker-compose || docker compose version >/dev/null 2>&1 || debs+=(docker-compose)
  have swift-ring-builder || debs+=(swift)
  have swift-proxy-server || debs+=(swift-proxy)
  have swift-object-server || debs+=(swift-object)
  have swift-container-server || debs+=(swift-container)
  have swift-account-server || debs+=(swift-account)
  have memcached || debs+=(memcached)
  # More real clients: podman (containers/image, like skopeo and buildah) and containerd's ctr.
  have podman || debs+=(podman)
  have ctr || debs+=(containerd)
  # A real ACME CA (Let's Encrypt's test server, with its mock DNS) for the certificate tests.
  have pebble || debs+=(pebble)
  # Directory logins: each test runs a private slapd; ldap-utils load its entries.
  have slapd || debs+=(slapd)
  have ldapwhoami || debs+=(ldap-utils)
  # The audit trail's syslog tests run a private rsyslogd (a unix socket and UDP on loopback).
  have rsyslogd || debs+=(rsyslog)
  # A real Prometheus scrapes the metrics listener (each test runs its own on loopback).
  have prometheus || debs+=(prometheus)
  # The web UI's end-to-end tests drive Debian's Chromium (never a downloaded browser build).
  have chromium || debs+=(chromium)
  # Shared state for several gateways (throttle counters, revocations, maintenance) lives in Redis.
  have redis-server || debs+=(redis-server)
fi
if [ "$mode" = --bench ]; then
  # Request rates are measured with ApacheBench (ab, from apache2-utils, installed above).
  # The benchmark compares with nginx in front of the same registry (the registry docs' recipe).
  have nginx || debs+=(nginx-light)
fi

if [ ${#debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && have apt-get; then
    echo "setup: installing Debian packages: ${debs[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # The package would otherwise set up (and start) a system directory the tests never use.
    if [[ " ${debs[*]} " == *" slapd "* ]]; then echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections; fi
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null
  else
    echo "setup: missing Debian packages. Install them with:" >&2
    echo "    sudo apt-get install -y ${debs[*]}" >&2
    # The gateway itself can still run against a registry elsewhere (GATEWAY_UPSTREAM); tests cannot.
    [ "$mode" = run ] || exit 1
  fi
fi

# npm ci when node_modules is missing or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

npx --no-install tsc -p . >&2
