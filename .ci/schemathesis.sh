#!/usr/bin/env bash
# Tests the live server against its own OpenAPI document with schemathesis (all
# checks): once with a member's token, once with the admin token. Needs the
# debug binary (`cargo build` or `cargo test` first) and python3 with venv; pip
# installs a pinned schemathesis into a throwaway venv. Exits non-zero on any
# failure, and when the server logged a panic.
#
#   .ci/schemathesis.sh        SCHEMATHESIS_EXAMPLES (default 100) test cases per
#                              operation and phase; SCHEMATHESIS_SEED repeats a run.
set -euo pipefail

cd "$(dirname "$0")/.."
repo="$(pwd)"
version="4.32.5"
examples="${SCHEMATHESIS_EXAMPLES:-100}"
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
bin="$target_dir/debug/tidemark"
[ -x "$bin" ] || { echo "no $bin: run cargo build first" >&2; exit 2; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "installing schemathesis $version into a throwaway venv"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"

# Port 0: the server takes a free port and names it in its first line.
TIDEMARK_ADMIN_TOKEN="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
export TIDEMARK_ADMIN_TOKEN
# Live pulls are held 1 s at most: a generated `wait` must not make the run sleep.
"$bin" serve --data "$work/data" --listen 127.0.0.1:0 --max-pull-wait 1 2>"$work/server.log" &
server_pid=$!
url=""
for _ in $(seq 100); do
    url="$(sed -n 's|^tidemark server listening on \(http://[^ ]*\) .*|\1|p' "$work/server.log")"
    [ -n "$url" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$url" ] || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
echo "server at $url"

# A space with a package, a member, and one record so that reads have something to return.
printf '%s' '{"version": 1, "collections": {"contacts": {"fields": {"name": "string", "calls": "counter", "notes": "text"}}}}' \
    >"$work/package.json"
"$bin" admin --server "$url" create-space crm --package "$work/package.json"
member_token="$("$bin" admin --server "$url" add-user alice)"
"$bin" admin --server "$url" grant alice crm
store="$work/alice.db"
"$bin" --store "$store" login --server "$url" --user alice --token "$member_token" --space crm >/dev/null
"$bin" --store "$store" put contacts c1 name=Ada calls=3 notes=hello >/dev/null
"$bin" --store "$store" sync >/dev/null

# schemathesis's default statuses for a refused invalid request, and 413: a
# push of more ops than the server takes is refused with 413 too_large (its
# `maxItems`), which clients answer by splitting the batch.
cat >"$work/common.toml" <<'EOF'
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]
EOF
# The member's requests name the space it belongs to and the record it holds;
# without that, nearly every one would stop at 404.
cat "$work/common.toml" - >"$work/member.toml" <<'EOF'
[parameters]
"path.space" = "crm"
"path.collection" = "contacts"
"path.id" = "c1"
EOF

run() {
    local who="$1" token="$2"
    shift 2
    echo "== schemathesis as $who"
    # In the scratch directory: schemathesis and hypothesis write nothing into the repository.
    (cd "$work" && "$work/venv/bin/schemathesis" "$@" run "$url/v1/openapi.json" \
        --checks all --max-examples "$examples" ${SCHEMATHESIS_SEED:+--seed "$SCHEMATHESIS_SEED"} \
        --header "Authorization: Bearer $token" --generation-database none --no-color)
}

status=0
run member "$member_token" --config-file "$work/member.toml" || status=1
run admin "$TIDEMARK_ADMIN_TOKEN" --config-file "$work/common.toml" || status=1

if grep -q "panicked" "$work/server.log"; then
    echo "the server panicked:" >&2
    grep -A5 "panicked" "$work/server.log" >&2
    status=1
fi
[ "$status" -eq 0 ] && echo "schemathesis: no failures"
exit "$status"
