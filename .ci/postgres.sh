#!/usr/bin/env bash
# Makes sure a PostgreSQL answers for the tests and prints the admin URL they use.
# On this kind of machine one runs at 127.0.0.1:5432 (trust auth, user postgres);
# if it has stopped, it is started with the machine's own cluster tools.
set -euo pipefail

url="${TIDEMARK_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"

answers() { pg_isready -q -d "$url" 2>/dev/null; }

if ! answers; then
    echo "PostgreSQL does not answer at $url: starting it" >&2
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        for version in $(ls /etc/postgresql); do
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        done
    fi
    for _ in $(seq 1 30); do
        answers && break
        sleep 1
    done
fi
answers || { echo "no PostgreSQL at $url: the PostgreSQL tests cannot run" >&2; exit 1; }
echo "$url"
