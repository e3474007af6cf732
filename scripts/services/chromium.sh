#!/usr/bin/env bash
# Headless Chromium for the plot rendering test (pkg/plot) and the live
# dashboard test (pkg/dashboard, driven over --remote-debugging-pipe). Nothing runs in
# the background: each test starts its own short-lived headless browser.
# start: install Debian's chromium when missing, print its path.
# stop:  nothing to stop.
set -euo pipefail
bin=/usr/bin/chromium
case "${1:-}" in
start)
	if [ ! -x "$bin" ]; then
		echo "chromium: installing Debian's chromium package" >&2
		export DEBIAN_FRONTEND=noninteractive
		if ! apt-get install -y chromium >&2; then
			apt-get update >&2
			apt-get install -y chromium >&2
		fi
	fi
	"$bin" --version >&2
	echo "export SKEIN_TEST_CHROMIUM=$bin"
	;;
stop)
	;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
