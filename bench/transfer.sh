#!/usr/bin/env bash
# Transfer benchmark on loopback.
#
# One patchmesh node holding a patch serves one fetching node, then (with a
# fresh seeder and fresh fetchers) seven fetching nodes at once. In the same
# run nginx serves the same file to one curl and to seven parallel curls, and
# quic-baseline moves the same number of bytes over one raw quinn stream,
# once into memory and once hashing and storing each MiB as a file, which is
# the least work a fetcher must do with what it receives.
#
# Node time runs from the moment the policy is published to the seeder until
# every fetcher's own status reports the patch "installed", polled every
# 50 ms, so it includes policy gossip, chunk fetching, payload assembly and
# the no-op install command. The transfer window is reported too: from each
# fetcher's "download started" to its "download complete" log line. Every node shares one site, so site locality
# plays no part; in the seven-fetcher case fetchers also take chunks from
# each other. Seven-fetcher figures are aggregates: 7 × size ÷ time.
#
# Usage: bench/transfer.sh [--json] [--size-mib N] [--requests-per-peer N]
# With --json the last line of standard output is one JSON object.
set -euo pipefail

size_mib=256
json=0
requests_per_peer=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --json) json=1 ;;
        --size-mib) size_mib="$2"; shift ;;
        --requests-per-peer) requests_per_peer="$2"; shift ;;
        -h|--help) sed -n 2,17p "$0"; exit 0 ;;
        *) echo "unknown argument \"$1\" (expected --json, --size-mib N or --requests-per-peer N)" >&2; exit 2 ;;
    esac
    shift
done
if ! [[ "$size_mib" =~ ^[1-9][0-9]*$ ]]; then
    echo "invalid --size-mib \"$size_mib\" (expected a positive whole number)" >&2
    exit 2
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/patchmesh-transfer.XXXXXX)"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "$@" >&2; }

log "building release binaries"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml" \
    -p patchmesh-node -p patchmesh-signer -p patchmesh-sim >&2
bin="$repo/target/release"
node="$bin/patchmesh-node"
signer="$bin/patchmesh-signer"

if ! command -v nginx >/dev/null; then
    log "installing nginx"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >&2 \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >&2
fi

# Admin material and the patch, signed once and published to each seeder.
log "signing a ${size_mib} MiB patch"
admin="$work/admin"
mkdir -p "$admin"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$work/payload.bin"
"$signer" keygen --out "$admin/admin.key" >/dev/null
"$signer" root init --key "$admin/admin.key" --out "$admin/root.bin" >/dev/null
"$signer" patch add "$work/payload.bin" --name bench --version 1 --severity low \
    --install 'true' --key "$admin/admin.key" --out "$admin/patch" >/dev/null
expires="$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)"
printf 'id = "bench"\nversion = 1\nexpires = "%s"\n\n[content]\npatches = ["bench@1"]\n' \
    "$expires" >"$admin/policy.toml"
"$signer" policy sign "$admin/policy.toml" --key "$admin/admin.key" \
    --out "$admin/policy.bin" >/dev/null

# Starts a node in data folder $1 with host name $2 and extra init
# arguments; sets started_pid and adds it to pids.
start_node() {
    local dir="$1" host="$2"
    shift 2
    "$node" init --data-dir "$dir" --root "$admin/root.bin" --host "$host" \
        --site bench "$@" >/dev/null
    if [[ -n "$requests_per_peer" ]]; then
        python3 - "$dir/config.toml" "$requests_per_peer" <<'PY'
import re, sys
path, value = sys.argv[1], sys.argv[2]
text = open(path).read()
if re.search(r"^requests_per_peer\s*=", text, re.M):
    text = re.sub(r"^requests_per_peer\s*=.*$", f"requests_per_peer = {value}", text, flags=re.M)
else:
    text += f"\n[transfer]\nrequests_per_peer = {value}\n"
open(path, "w").write(text)
PY
    fi
    RUST_LOG=warn "$node" run --data-dir "$dir" >/dev/null 2>"$dir.log" &
    started_pid=$!
    pids+=("$started_pid")
    for _ in $(seq 200); do
        [[ -s "$dir/control.url" && -s "$dir/listen.addrs" ]] && break
        sleep 0.05
    done
    if [[ ! -s "$dir/control.url" ]]; then
        log "node in $dir did not start; its log:"
        cat "$dir.log" >&2
        exit 1
    fi
}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# Runs one node scenario with $1 fetchers; writes the seconds to
# $work/nodes-$1/secs and the seeder's peak RSS to $work/nodes-$1/rss_peak.
node_scenario() {
    local count="$1" run="$work/nodes-$1"
    mkdir -p "$run"
    start_node "$run/seeder" seeder --observer
    local seeder_pid="$started_pid"
    sleep 2
    if [[ "$count" == 1 ]]; then
        rss_mib "$seeder_pid" >"$work/rss_idle"
    fi
    local seeder_url bootstrap
    seeder_url="$(cat "$run/seeder/control.url")"
    bootstrap="$(grep -m1 quic-v1 "$run/seeder/listen.addrs")"
    "$signer" publish --node "$seeder_url" "$admin/patch" >/dev/null

    local urls=()
    for i in $(seq "$count"); do
        start_node "$run/fetcher$i" "fetcher$i" --bootstrap "$bootstrap"
        urls+=("$(cat "$run/fetcher$i/control.url")")
    done

    # Sample the seeder's RSS while the fetchers run.
    (
        while kill -0 "$seeder_pid" 2>/dev/null; do
            rss_mib "$seeder_pid"
            echo
            sleep 0.1
        done
    ) >"$run/rss" 2>/dev/null &
    local sampler=$!
    pids+=("$sampler")

    (
    python3 - "$signer" "$seeder_url" "$admin/policy.bin" "$count" "${urls[@]}" <<'PY'
import json, subprocess, sys, time, urllib.request

signer, seeder, policy, count, urls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]

def get(url, path):
    with urllib.request.urlopen(url + path, timeout=5) as reply:
        return json.load(reply)

# Wait until every fetcher knows the seeder and, with several, each other.
deadline = time.time() + 30
while time.time() < deadline:
    if all(len(get(u, "/v1/peers")) >= count for u in urls):
        break
    time.sleep(0.1)
else:
    print("warning: not every fetcher connected to every other node", file=sys.stderr)

start = time.monotonic()
subprocess.run([signer, "publish", "--node", seeder, policy], check=True, stdout=subprocess.DEVNULL)
pending = set(urls)
deadline = start + 600
while pending and time.monotonic() < deadline:
    for url in list(pending):
        status = get(url, "/v1/status")
        me = status["node"]["peer"]
        for report in status["reports"]:
            if report["peer"] != me:
                continue
            states = [p["state"] for p in report["patches"]]
            if "failed" in states:
                sys.exit(f"fetcher {url} failed: {report['patches']}")
            if "installed" in states:
                pending.discard(url)
    time.sleep(0.05)
if pending:
    sys.exit(f"timed out waiting for {sorted(pending)}")
print(f"{time.monotonic() - start:.3f}")
PY
    ) >"$run/secs"
    kill "$sampler" 2>/dev/null || true
    sort -n "$run/rss" | tail -1 >"$run/rss_peak"
    # Transfer window alone: the longest "download complete … secs=" that a
    # fetcher logged, without gossip, assembly, install and report delays.
    python3 - "$run"/fetcher*.log >"$run/transfer_secs" <<'PY'
import re, sys
secs = []
for path in sys.argv[1:]:
    for line in open(path, errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        if "download complete" in line:
            match = re.search(r'secs="?([0-9.]+)', line)
            if match:
                secs.append(float(match.group(1)))
print(max(secs) if secs else "nan")
PY

    # Stop this scenario's nodes and free their disk.
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}

mb_per_s() { python3 -c "print(f'{$1 * $2 * 1048576 / $3 / 1e6:.1f}')"; }

log "node: 1 fetcher"
node_scenario 1
node1_secs="$(cat "$work/nodes-1/secs")"
node1="$(mb_per_s 1 "$size_mib" "$node1_secs")"
node1_transfer="$(mb_per_s 1 "$size_mib" "$(cat "$work/nodes-1/transfer_secs")")"
log "  ${node1} MB/s end to end, ${node1_transfer} MB/s while transferring"
rss_idle="$(cat "$work/rss_idle")"
log "node: 7 fetchers"
node_scenario 7
node7_secs="$(cat "$work/nodes-7/secs")"
node7="$(mb_per_s 7 "$size_mib" "$node7_secs")"
node7_transfer="$(mb_per_s 7 "$size_mib" "$(cat "$work/nodes-7/transfer_secs")")"
log "  ${node7} MB/s aggregate end to end, ${node7_transfer} MB/s while transferring"
rss_serving="$(cat "$work/nodes-7/rss_peak")"
rm -rf "$work/nodes-1" "$work/nodes-7"

# nginx on its own config, prefix and loopback port.
log "nginx: 1 and 7 curls"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
www="$work/nginx/www"
mkdir -p "$www"
ln "$work/payload.bin" "$www/payload.bin"
# nginx workers run as an unprivileged user; mktemp made the folder 0700.
chmod 755 "$work" "$work/nginx" "$www"
chmod 644 "$www/payload.bin"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$port;
        root $www;
    }
}
CONF
nginx -e "$work/nginx/error.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=("$!")
for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/payload.bin" -r 0-0 && break
    sleep 0.05
done

curl_run() {
    python3 - "$1" "http://127.0.0.1:$port/payload.bin" "$((size_mib * 1048576))" <<'PY'
import subprocess, sys, time
count, url, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
start = time.monotonic()
procs = [subprocess.Popen(["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}", url],
                          stdout=subprocess.PIPE, text=True) for _ in range(count)]
for proc in procs:
    out, _ = proc.communicate()
    if proc.returncode != 0 or int(out) != size:
        sys.exit(f"curl failed: exit {proc.returncode}, {out} bytes")
print(f"{time.monotonic() - start:.3f}")
PY
}
nginx1_secs="$(curl_run 1)"
nginx1="$(mb_per_s 1 "$size_mib" "$nginx1_secs")"
log "  ${nginx1} MB/s with 1 curl"
nginx7_secs="$(curl_run 7)"
nginx7="$(mb_per_s 7 "$size_mib" "$nginx7_secs")"
log "  ${nginx7} MB/s aggregate with 7 curls"

log "raw quinn: one stream"
quic="$("$bin/quic-baseline" --size-mib "$size_mib" --json 2>/dev/null | tail -1 \
    | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["mb_per_s"], 1))')"
log "raw quinn: one stream, each MiB hashed and stored as a file"
quic_store="$("$bin/quic-baseline" --size-mib "$size_mib" --store "$work/quic-store" --json 2>/dev/null \
    | tail -1 | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["mb_per_s"], 1))')"
rm -rf "$work/quic-store"

ratio() { python3 -c "print(f'{$1 / $2:.3f}')"; }
log ""
log "payload                 ${size_mib} MiB"
log "node, 1 fetcher         ${node1} MB/s (${node1_secs} s)"
log "node, 7 fetchers        ${node7} MB/s aggregate (${node7_secs} s)"
log "nginx, 1 curl           ${nginx1} MB/s (${nginx1_secs} s)"
log "nginx, 7 curls          ${nginx7} MB/s aggregate (${nginx7_secs} s)"
log "raw quinn, 1 stream     ${quic} MB/s"
log "raw quinn, stored       ${quic_store} MB/s"
log "node 1 ÷ nginx 1        $(ratio "$node1" "$nginx1")"
log "node 7 ÷ nginx 7        $(ratio "$node7" "$nginx7")"
log "node 1 ÷ raw quinn      $(ratio "$node1" "$quic")"
log "node 1 transfer window  ${node1_transfer} MB/s, ÷ raw quinn $(ratio "$node1_transfer" "$quic"), ÷ stored $(ratio "$node1_transfer" "$quic_store")"
log "seeder RSS idle         ${rss_idle} MiB"
log "seeder RSS serving 7    ${rss_serving} MiB (peak of 100 ms samples)"

if [[ "$json" == 1 ]]; then
    printf '{"size_mib":%s,"requests_per_peer":%s,"node_1_mb_s":%s,"node_1_secs":%s,"node_7_mb_s":%s,"node_7_secs":%s,"nginx_1_mb_s":%s,"nginx_7_mb_s":%s,"quic_mb_s":%s,"quic_store_mb_s":%s,"ratio_1_vs_nginx":%s,"ratio_7_vs_nginx":%s,"ratio_1_vs_quic":%s,"node_1_transfer_mb_s":%s,"node_7_transfer_mb_s":%s,"ratio_1_transfer_vs_quic":%s,"ratio_1_transfer_vs_quic_store":%s,"rss_idle_mib":%s,"rss_serving_mib":%s}\n' \
        "$size_mib" "${requests_per_peer:-null}" "$node1" "$node1_secs" "$node7" "$node7_secs" \
        "$nginx1" "$nginx7" "$quic" "$quic_store" "$(ratio "$node1" "$nginx1")" "$(ratio "$node7" "$nginx7")" \
        "$(ratio "$node1" "$quic")" "$node1_transfer" "$node7_transfer" \
        "$(ratio "$node1_transfer" "$quic")" "$(ratio "$node1_transfer" "$quic_store")" \
        "$rss_idle" "$rss_serving"
fi
