#!/usr/bin/env bash
# Branch offices on a shaped WAN, in network namespaces this script creates.
#
# Topology: one HQ namespace holding the publishing node (also the
# observer); per office a router namespace with a bridge and NODES node
# namespaces on it; each router joined to HQ by a veth pair shaped with a tc
# token bucket (tbf) in both directions. mDNS is on inside the namespaces.
#
# It publishes a patch of SIZE_MIB and waits until every node installed it,
# then reports per office: chunk payload bytes that the office's nodes took
# from other sites (the nodes' own count, divided by the patch size) and
# bytes received on the office router's WAN interface (the kernel's count,
# with headers and control traffic, divided by the patch size).
#
# Usage: bench/branch_offices.sh [--json] [--check] [--mode sharing|naive|both]
#            [--offices N] [--nodes N] [--size-mib N] [--wan-mbit N]
#   --check   exit 1 when, with sharing, an office's payload or wire ratio
#             exceeds --max-ratio (default 1.10)
# Needs root (ip netns, tc). Everything it creates is named pmbo-* and
# removed on exit, also after a failure.
set -euo pipefail

json=0
check=0
mode=both
offices=2
nodes=5
size_mib=32
wan_mbit=8
max_ratio=1.10
timeout_s=600
while [ $# -gt 0 ]; do
    case "$1" in
        --json) json=1 ;;
        --check) check=1 ;;
        --mode) mode=$2; shift ;;
        --offices) offices=$2; shift ;;
        --nodes) nodes=$2; shift ;;
        --size-mib) size_mib=$2; shift ;;
        --wan-mbit) wan_mbit=$2; shift ;;
        --max-ratio) max_ratio=$2; shift ;;
        --timeout) timeout_s=$2; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${PATCHMESH_BIN:-$root/target/debug}
node_bin=$bin/patchmesh-node
signer_bin=$bin/patchmesh-signer
if [ ! -x "$node_bin" ] || [ ! -x "$signer_bin" ]; then
    echo "building binaries into $bin" >&2
    (cd "$root" && cargo build -q -p patchmesh-node -p patchmesh-signer)
fi
for tool in ip tc curl python3; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
if [ "$(id -u)" != 0 ]; then
    echo "needs root for ip netns and tc" >&2
    exit 1
fi

work=$(mktemp -d /tmp/pmbo.XXXXXX)
prefix=pmbo
# shellcheck source=lib/netns.sh
. "$root/bench/lib/netns.sh"
log() { echo "[branch_offices] $*" >&2; }

cleanup() {
    delete_namespaces
    if [ -n "${PMBO_KEEP:-}" ]; then
        echo "kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT INT TERM

# Builds HQ, routers, bridges and node namespaces with addresses:
# office k LAN 10.77.k.0/24 (router .1, nodes .11…), WAN k 10.78.k.0/30.
build_topology() {
    ip netns add pmbo-hq
    in_ns pmbo-hq ip link set lo up
    in_ns pmbo-hq sysctl -qw net.ipv4.ip_forward=1
    for k in $(seq 1 "$offices"); do
        local router=pmbo-r$k
        ip netns add "$router"
        in_ns "$router" ip link set lo up
        in_ns "$router" sysctl -qw net.ipv4.ip_forward=1
        ip link add pmbo-w$k-h type veth peer name pmbo-w$k-r
        ip link set pmbo-w$k-h netns pmbo-hq
        ip link set pmbo-w$k-r netns "$router"
        in_ns pmbo-hq ip addr add 10.78.$k.1/30 dev pmbo-w$k-h
        in_ns pmbo-hq ip link set pmbo-w$k-h up
        in_ns "$router" ip addr add 10.78.$k.2/30 dev pmbo-w$k-r
        in_ns "$router" ip link set pmbo-w$k-r up
        # Shape both directions of the WAN link.
        in_ns pmbo-hq tc qdisc add dev pmbo-w$k-h root tbf rate "${wan_mbit}mbit" burst 32kbit latency 400ms
        in_ns "$router" tc qdisc add dev pmbo-w$k-r root tbf rate "${wan_mbit}mbit" burst 32kbit latency 400ms
        in_ns pmbo-hq ip route add 10.77.$k.0/24 via 10.78.$k.2
        in_ns "$router" ip link add br0 type bridge
        in_ns "$router" ip addr add 10.77.$k.1/24 dev br0
        in_ns "$router" ip link set br0 up
        in_ns "$router" ip route add default via 10.78.$k.1
        for i in $(seq 1 "$nodes"); do
            local ns=pmbo-o$k-n$i
            ip netns add "$ns"
            in_ns "$ns" ip link set lo up
            ip link add pmbo-o$k-$i-a type veth peer name pmbo-o$k-$i-b
            ip link set pmbo-o$k-$i-a netns "$router"
            ip link set pmbo-o$k-$i-b netns "$ns"
            in_ns "$router" ip link set pmbo-o$k-$i-a master br0 up
            in_ns "$ns" ip link set pmbo-o$k-$i-b name eth0
            in_ns "$ns" ip addr add 10.77.$k.$((10 + i))/24 dev eth0
            in_ns "$ns" ip link set eth0 up
            in_ns "$ns" ip route add default via 10.77.$k.1
        done
    done
}

# In naive mode nodes take nothing from same-site peers.
naive_hook() {
    if [ "$run_mode" = naive ]; then
        sed -i 's/^lan_sharing = true/lan_sharing = false/' "$1/config.toml"
    fi
}
node_config_hook=naive_hook

rx_bytes() {
    in_ns "pmbo-r$1" cat "/sys/class/net/pmbo-w$1-r/statistics/rx_bytes"
}

# Runs one measurement in mode $1 and prints a JSON list of offices.
run_once() {
    run_mode=$1
    delete_namespaces
    build_topology
    local run=$work/$run_mode
    mkdir -p "$run"
    start_node pmbo-hq "$run/hq" hq hq --observer --mdns --dial-range 10.77.0.0/16 --dial-range 10.78.0.0/16
    local hq_peer
    hq_peer=$(head -1 "$run/hq/listen.addrs" | sed 's#.*/p2p/##')
    for k in $(seq 1 "$offices"); do
        for i in $(seq 1 "$nodes"); do
            start_node "pmbo-o$k-n$i" "$run/o$k-n$i" "o$k-n$i" "office-$k" --mdns \
                --dial-range 10.77.0.0/16 --dial-range 10.78.0.0/16 --bootstrap "/ip4/10.78.$k.1/udp/4001/quic-v1/p2p/$hq_peer"
        done
    done
    sleep 3
    declare -A rx_before
    for k in $(seq 1 "$offices"); do rx_before[$k]=$(rx_bytes "$k"); done

    local url
    url=$(cat "$run/hq/control.url")
    local started
    started=$(date +%s.%N)
    in_ns pmbo-hq "$signer_bin" publish --node "$url" "$work/patch" "$work/policy.bin" >/dev/null
    log "$run_mode: published $size_mib MiB; waiting for $((offices * nodes + 1)) installs"
    local status=$run/status.json
    local deadline=$(( $(date +%s) + timeout_s ))
    while :; do
        in_ns pmbo-hq "$signer_bin" status --node "$url" --json 2>/dev/null | tail -1 >"$status" || true
        local done_count
        done_count=$(python3 - "$status" <<'PY'
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except Exception:
    print(0); sys.exit()
print(sum(1 for r in data.get("reports", []) for p in r.get("patches", []) if p["state"] == "installed"))
PY
)
        [ "$done_count" -ge $((offices * nodes + 1)) ] && break
        if [ "$(date +%s)" -gt "$deadline" ]; then
            log "$run_mode: timed out with $done_count installed"
            break
        fi
        sleep 1
    done
    local rx_file=$run/rx.txt
    : >"$rx_file"
    for k in $(seq 1 "$offices"); do
        echo "$k $(( $(rx_bytes "$k") - ${rx_before[$k]} ))" >>"$rx_file"
    done
    python3 - "$status" "$rx_file" "$patch_bytes" "$started" "$offices" "$nodes" <<'PY'
import json, sys
from datetime import datetime
status = json.load(open(sys.argv[1]))
rx = dict(line.split() for line in open(sys.argv[2]))
patch = int(sys.argv[3]); started = float(sys.argv[4])
offices, nodes = int(sys.argv[5]), int(sys.argv[6])
def ts(text):
    text = text.rstrip("Z")
    if "." in text:
        main, fraction = text.split(".")
        text = main + "." + fraction[:6]
    return datetime.fromisoformat(text + "+00:00").timestamp()
out = []
for k in range(1, offices + 1):
    site = f"office-{k}"
    cross = 0; last = 0.0; installed = 0
    for report in status.get("reports", []):
        if report["site"] != site:
            continue
        for p in report["patches"]:
            cross += p["bytes_cross_site"]
            if p["state"] == "installed":
                installed += 1
                last = max(last, ts(p["since"]) - started)
    out.append({
        "office": site,
        "installed": installed,
        "nodes": nodes,
        "wan_payload_ratio": round(cross / patch, 4),
        "wan_wire_ratio": round(int(rx[str(k)]) / patch, 4),
        "last_install_s": round(last, 1),
    })
print(json.dumps(out))
PY
    delete_namespaces
}

# Admin material shared by both runs.
make_admin_material "$size_mib" office-demo
patch_bytes=$((size_mib * 1024 * 1024))

sharing='null'
naive='null'
if [ "$mode" = sharing ] || [ "$mode" = both ]; then sharing=$(run_once sharing); fi
if [ "$mode" = naive ] || [ "$mode" = both ]; then naive=$(run_once naive); fi

result=$(python3 - "$patch_bytes" "$sharing" "$naive" "$wan_mbit" "$offices" "$nodes" <<'PY'
import json, sys
print(json.dumps({
    "patch_bytes": int(sys.argv[1]),
    "wan_mbit": float(sys.argv[4]),
    "offices": int(sys.argv[5]),
    "nodes_per_office": int(sys.argv[6]),
    "sharing": json.loads(sys.argv[2]),
    "naive": json.loads(sys.argv[3]),
}))
PY
)

python3 - "$result" >&2 <<'PY'
import json, sys
r = json.loads(sys.argv[1])
for mode in ("sharing", "naive"):
    for o in r[mode] or []:
        print(f"{mode:8} {o['office']:10} installed {o['installed']}/{o['nodes']}  "
              f"WAN payload {o['wan_payload_ratio']:.3f}x  WAN wire {o['wan_wire_ratio']:.3f}x  "
              f"last install {o['last_install_s']} s")
PY

status=0
if [ "$check" = 1 ]; then
    status=$(python3 - "$result" "$max_ratio" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); limit = float(sys.argv[2])
bad = [o for o in r["sharing"] or [] if o["installed"] < o["nodes"]
       or o["wan_payload_ratio"] > limit or o["wan_wire_ratio"] > limit]
for o in bad:
    print(f"office {o['office']} over the limit or incomplete: {o}", file=sys.stderr)
print(1 if bad or not r["sharing"] else 0)
PY
)
fi
if [ "$json" = 1 ]; then
    echo "$result"
fi
exit "$status"
