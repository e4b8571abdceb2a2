#!/usr/bin/env bash
# Builds the container image from scripts/build.sh's output and checks it as
# far as this machine allows:
#
#   scripts/container-check.sh [--release|--debug]   (default --release)
#
# 1. compose.yml: two gateway replicas on one image and one PostgreSQL.
# 2. `podman build` with ARTIFACTS=prebuilt (target/<profile>/llm-gateway and
#    target/site; run scripts/build.sh first) on a Debian base made here with
#    debootstrap (no registry is reachable), with `--isolation chroot` (the
#    sandbox's crun cannot start containers for RUN steps).
# 3. `podman run` cannot work here (the sandbox refuses setrlimit), so the
#    image's filesystem is exported (`podman create`, `podman export`) and
#    run in a chroot as the image's user (10001), with the image's ENV,
#    ENTRYPOINT and CMD: migrations on SQLite in /data; the mock provider;
#    two replicas on one PostgreSQL database (one on SQLite when PostgreSQL
#    is not there); /health, /health/live, /health/ready, compose.yml's
#    health check command, the site; a user, credit and key through the
#    operator API on one replica and a chat call with that key on the other.
#
# Without podman it prints why it skipped and exits 0. Environment:
#   CONTAINER_BASE            base image for the gathering stage (default:
#                             localhost/llm-gateway-base:bookworm, made once)
#   DEBIAN_MIRROR             mirror for debootstrap (default: debootstrap's)
#   CONTAINER_CHECK_PORT      first of three ports (default 3117: replicas
#                             3117, 3118, mock provider 3119)
#   LLM_GATEWAY_TEST_POSTGRES_URL   default postgres://postgres@127.0.0.1:5432/postgres
#   KEEP_IMAGE=1              keep localhost/llm-gateway:check afterwards
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile=release
case "${1:---release}" in
  --release) profile=release ;;
  --debug) profile=debug ;;
  *) echo "usage: scripts/container-check.sh [--release|--debug]" >&2; exit 2 ;;
esac

say() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'container check FAILED: %s\n' "$*" >&2; exit 1; }

if ! command -v podman >/dev/null 2>&1; then
  echo "container check skipped: podman not installed (apt-get install podman)"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "container check skipped: it needs root (chroot, mount -t proc)"
  exit 0
fi

bin=target/$profile/llm-gateway
[[ -x "$bin" && -f target/site/site.json ]] ||
  fail "no $bin or target/site/site.json: run scripts/build.sh$([[ $profile == release ]] && echo ' --release') first"

image=localhost/llm-gateway:check
base=${CONTAINER_BASE:-localhost/llm-gateway-base:bookworm}
port1=${CONTAINER_CHECK_PORT:-3117}
port2=$((port1 + 1))
mock_port=$((port1 + 2))
master_key="container-check-master-key-0123"
pg_url=${LLM_GATEWAY_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
# RUN steps in a chroot: the OCI runtime cannot make containers here.
export BUILDAH_ISOLATION=chroot

work=$(mktemp -d /tmp/llm-gateway-container.XXXXXX)
root=$work/rootfs
container=""
pg_db=""
pids=()
started=$SECONDS

# Unmounts everything under $work, deepest first; true when nothing is left.
unmount_all() {
  local target
  for target in $(findmnt -rn -o TARGET | grep -F "$work/" | sort -r); do
    umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || true
  done
  ! findmnt -rn -o TARGET | grep -qF "$work/"
}

cleanup() {
  local status=$? pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$container" ]]; then podman rm -f "$container" >/dev/null 2>&1 || true; fi
  if [[ "${KEEP_IMAGE:-0}" != 1 ]]; then
    podman rmi -f "$image" >/dev/null 2>&1 || true
  fi
  if [[ -n "$pg_db" ]]; then
    psql "$pg_url" -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [[ $status -ne 0 ]]; then
    local log
    for log in "$work"/*.log; do
      [[ -f "$log" && "$log" != */build.log && "$log" != */debootstrap.log ]] || continue
      printf -- '--- %s (last lines)\n' "${log##*/}" >&2
      tail -n 25 "$log" >&2
    done
  fi
  if unmount_all; then
    rm -rf --one-file-system "$work"
  else
    echo "left $work: something is still mounted under it" >&2
  fi
  exit "$status"
}
trap cleanup EXIT

# Fails with the last lines of one of the logs.
fail_log() {
  printf -- '--- %s (last lines)\n' "$2" >&2
  tail -n 30 "$work/$2" >&2
  fail "$1"
}

json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

# --- 1. compose.yml -----------------------------------------------------------
say "compose.yml: two gateway replicas, one image, one PostgreSQL"
python=python3
python3 -c 'import yaml' 2>/dev/null || python=.venv/bin/python
if "$python" -c 'import yaml' 2>/dev/null; then
  "$python" - compose.yml <<'EOF'
import sys, yaml
compose = yaml.safe_load(open(sys.argv[1]))
services = compose["services"]
pg = [n for n, s in services.items() if "postgres" in str(s.get("image", ""))]
assert len(pg) == 1, f"one postgres service, found {pg}"
pg = pg[0]
assert "healthcheck" in services[pg], "postgres has a healthcheck"
gateways = {n: s for n, s in services.items() if n != pg}
assert len(gateways) == 2, f"two gateway replicas, found {sorted(gateways)}"
images = {s["image"] for s in gateways.values()}
assert len(images) == 1, f"one image for both replicas: {images}"
urls = {s["environment"]["GATEWAY_DATABASE_URL"] for s in gateways.values()}
assert len(urls) == 1 and f"@{pg}:" in urls.pop(), "both replicas on the postgres service"
ports = [s["ports"][0].rsplit(":", 1)[0] for s in gateways.values()]
assert len(set(ports)) == 2, f"different host ports: {ports}"
for name, s in gateways.items():
    assert s["depends_on"][pg]["condition"] == "service_healthy", name
    assert any("/health/ready" in part for part in s["healthcheck"]["test"]), name
    assert s["environment"]["GATEWAY_MASTER_KEY"].startswith("${GATEWAY_MASTER_KEY"), name
print(f"    {pg} + {', '.join(sorted(gateways))} on ports {', '.join(ports)}")
EOF
else
  echo "    (no PyYAML here: compose.yml not parsed)" >&2
fi
# The health check command the replicas run, to be run in the chroot below.
healthcheck=$("$python" -c '
import sys, yaml
s = yaml.safe_load(open("compose.yml"))["services"]["gateway-1"]["healthcheck"]["test"]
print(" ".join(s[1:]))' 2>/dev/null || echo "/app/bin/wget -q -O - http://127.0.0.1:3000/health/ready")

# --- 2. the image -------------------------------------------------------------
if ! podman image exists "$base"; then
  [[ "$base" == localhost/llm-gateway-base:* ]] ||
    fail "base image $base is not here and cannot be pulled"
  command -v debootstrap >/dev/null 2>&1 ||
    fail "no debootstrap to make $base (apt-get install debootstrap)"
  say "making $base with debootstrap (Debian bookworm, minbase)"
  t0=$SECONDS
  debootstrap --variant=minbase --include=ca-certificates,busybox-static \
    bookworm "$work/base" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} >"$work/debootstrap.log" 2>&1 ||
    fail_log "debootstrap failed" debootstrap.log
  rm -rf "$work/base/var/cache/apt/archives/"*.deb "$work/base/var/lib/apt/lists/"*
  unmount_all || fail "debootstrap left mounts under $work/base"
  tar -C "$work/base" -c . | podman import --quiet - "$base" >/dev/null
  rm -rf --one-file-system "$work/base"
  echo "    made in $((SECONDS - t0)) s" >&2
fi

say "podman build ($profile binary and site, base $base)"
t0=$SECONDS
podman build --isolation chroot --layers=false \
  --build-arg ARTIFACTS=prebuilt --build-arg PROFILE="$profile" --build-arg BASE="$base" \
  -f Containerfile -t "$image" . >"$work/build.log" 2>&1 ||
  fail_log "podman build" build.log
build_secs=$((SECONDS - t0))
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "    built in ${build_secs} s; image $((size / 1024 / 1024)) MiB ($size bytes)" >&2

config=$(podman image inspect --format '{{json .Config}}' "$image")
user=$(json 'd["User"]' <<<"$config")
[[ "$user" == 10001* ]] || fail "the image's user is '$user', not 10001"
json '" ".join(d["Entrypoint"] + d["Cmd"])' <<<"$config" >"$work/command"
json '"\n".join(d.get("Env") or [])' <<<"$config" >"$work/env"
json '" ".join(sorted(d.get("ExposedPorts", {})))' <<<"$config" | grep -q '^3000/tcp$' ||
  fail "the image does not expose 3000/tcp"

# --- 3. its filesystem, in a chroot --------------------------------------------
say "podman create + podman export"
container=$(podman create "$image")
mkdir -p "$root"
podman export "$container" | tar -x -C "$root"
for path in app/bin/llm-gateway app/bin/wget app/site/site.json etc/llm-gateway/config.yml \
  etc/ssl/certs/ca-certificates.crt etc/passwd; do
  [[ -e "$root/$path" ]] || fail "/$path is missing from the image"
done
[[ ! -e "$root/bin/sh" ]] || fail "the image has a shell"
[[ "$(stat -c %u "$root/data")" == 10001 ]] || fail "/data is not uid 10001's"
echo "    $(find "$root" -type f | wc -l) files; $(du -sh "$root" | cut -f1) unpacked" >&2

# A container gets /proc (the binary finds its site from /proc/self/exe).
mkdir -p "$root/proc"
mount -t proc proc "$root/proc"

# Sets cmd to run a command in the image's filesystem as its user, with only
# the image's environment and the given VAR=value pairs (a plain command, so
# that `"${cmd[@]}" &` leaves the server's own pid in $!).
image_cmd() {
  local -a vars=()
  mapfile -t vars <"$work/env"
  while [[ $# -gt 0 && "$1" == *=* ]]; do vars+=("$1"); shift; done
  cmd=(env -i "${vars[@]}" chroot --userspec=10001:10001 "$root" "$@")
}
in_image() { image_cmd "$@"; "${cmd[@]}"; }
# Starts the image's own command (ENTRYPOINT + CMD) in the background.
start() {
  local name=$1; shift
  # shellcheck disable=SC2046
  image_cmd "$@" $(cat "$work/command")
  "${cmd[@]}" >"$work/$name.log" 2>&1 &
  pids+=($!)
  declare -g "pid_${name//-/_}=$!"
}
# Waits for a URL to answer 200 while the process `pid` runs.
wait_for() {
  local url=$1 name=$2 pid=$3
  for _ in $(seq 1 300); do
    if curl -sf -o /dev/null "$url"; then return 0; fi
    kill -0 "$pid" 2>/dev/null || fail "$name exited before $url answered (see $name.log)"
    sleep 0.1
  done
  fail "$url did not answer 200 within 30 s (see $name.log)"
}

say "migrations on SQLite in /data, as uid 10001"
in_image /app/bin/llm-gateway migrate --config /etc/llm-gateway/config.yml >"$work/migrate.log" 2>&1 ||
  fail "migrate on /data/gateway.db (see migrate.log)"
[[ -f "$root/data/gateway.db" && "$(stat -c %u "$root/data/gateway.db")" == 10001 ]] ||
  fail "no /data/gateway.db of uid 10001"

say "mock provider on 127.0.0.1:$mock_port"
image_cmd /app/bin/llm-gateway mock-provider --port "$mock_port"
"${cmd[@]}" >"$work/mock.log" 2>&1 &
pids+=($!)
pid_mock=$!

replicas=("http://127.0.0.1:$port1" "http://127.0.0.1:$port2")
if command -v psql >/dev/null 2>&1 && psql "$pg_url" -qc 'SELECT 1' >/dev/null 2>&1; then
  pg_db=llm_gateway_container_$$
  psql "$pg_url" -qc "CREATE DATABASE $pg_db"
  database_url="${pg_url%/*}/$pg_db"
  say "two replicas on PostgreSQL ($pg_db), ports $port1 and $port2"
else
  database_url=sqlite:///data/gateway.db
  replicas=("${replicas[0]}")
  say "no PostgreSQL at $pg_url: one replica on SQLite, port $port1"
fi
i=0
for url in "${replicas[@]}"; do
  i=$((i + 1))
  start "gateway-$i" GATEWAY_HOST=127.0.0.1 GATEWAY_PORT="${url##*:}" \
    GATEWAY_DATABASE_URL="$database_url" GATEWAY_MASTER_KEY="$master_key" \
    OPENAI_API_KEY=sk-mock OPENAI_API_BASE="http://127.0.0.1:$mock_port/v1"
done
wait_for "http://127.0.0.1:$mock_port/v1/models" mock "$pid_mock"
i=0
for url in "${replicas[@]}"; do
  i=$((i + 1))
  pid_var=pid_gateway_$i
  wait_for "$url/health" "gateway-$i" "${!pid_var}"
  for path in /health/live /health/ready; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url$path")
    [[ "$code" == 200 ]] || fail "$url$path answered $code"
  done
  echo "    $url: /health, /health/live, /health/ready 200" >&2
done
# compose.yml's health check, as the container would run it.
# shellcheck disable=SC2086
in_image ${healthcheck//:3000/:$port1} >/dev/null || fail "the health check command failed: $healthcheck"
echo "    health check command ok: $healthcheck" >&2

say "the site from /app/site"
first=${replicas[0]}
curl -sf "$first/" | grep -qi '<html' || fail "GET / is not the dashboard's page"
pkg_dir=$(json 'd["pkg_dir"]' <"$root/app/site/site.json")
curl -sf -o /dev/null "$first/$pkg_dir/llm-gateway.js" || fail "GET /$pkg_dir/llm-gateway.js"
echo "    / and /$pkg_dir/llm-gateway.js 200" >&2

say "a user, credit and key on ${replicas[0]}; a chat call with it on ${replicas[-1]}"
api() {
  local method=$1 url=$2 body=${3:-}
  curl -sf -X "$method" -H "Authorization: Bearer $master_key" -H 'Content-Type: application/json' \
    ${body:+--data "$body"} "$url"
}
api POST "$first/v1/users" '{"user_id": "container-check", "alias": "container check"}' >/dev/null ||
  fail "POST /v1/users"
api POST "$first/v1/users/container-check/credits" '{"amount": "1.00", "note": "container check"}' >/dev/null ||
  fail "POST /v1/users/container-check/credits"
key=$(api POST "$first/v1/keys" '{"user_id": "container-check", "key_name": "container-check"}' | json 'd["key"]') ||
  fail "POST /v1/keys"
answer=$(curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  --data '{"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "Hello from the container check"}]}' \
  "${replicas[-1]}/v1/chat/completions") || fail "POST /v1/chat/completions with the user's key"
content=$(json 'd["choices"][0]["message"]["content"]' <<<"$answer")
[[ -n "$content" ]] || fail "the chat answer has no content: $answer"
echo "    answer: ${content:0:60}" >&2
for _ in $(seq 1 50); do
  count=$(api GET "$first/v1/users/container-check/usage" | json 'len(d["data"]) if isinstance(d, dict) else len(d)')
  [[ "$count" -ge 1 ]] && break
  sleep 0.1
done
[[ "$count" -ge 1 ]] || fail "the call was not recorded in the user's usage"
echo "    recorded in the user's usage, seen from ${replicas[0]}" >&2

say "stopping (SIGTERM)"
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for ((i = 1; i <= ${#replicas[@]}; i++)); do
  pid_var=pid_gateway_$i
  wait "${!pid_var}" || fail "gateway-$i exited with status $? on SIGTERM (see gateway-$i.log)"
done
for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
pids=()

echo "container check passed: image $image $((size / 1024 / 1024)) MiB, built in ${build_secs} s, checked in $((SECONDS - started)) s"
