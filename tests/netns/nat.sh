#!/usr/bin/env bash
# Two nodes behind separate NATs (iptables MASQUERADE, inbound only for
# established flows) and a relay node and a publisher on a shared "public"
# bridge. Node A (an observer) and node B reserve slots on the relay; B
# reaches A only through a relay circuit, since neither NAT lets a new
# inbound flow in. The test checks that both NATed nodes install the patch,
# that A's status contains B's install report (which B can only have sent
# over the circuit or a hole-punched connection), and that the relay opened
# a circuit between them. Whether hole punching (DCUtR) then made the B-A
# connection direct is printed, not asserted: it depends on the NATs'
# port mapping.
#
# Usage: tests/netns/nat.sh [SIZE_MIB]   (needs root and iptables)
set -euo pipefail

size_mib=${1:-4}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${PATCHMESH_BIN:-$root/target/debug}
node_bin=$bin/patchmesh-node
signer_bin=$bin/patchmesh-signer
prefix=pmnt
# shellcheck source=../../bench/lib/netns.sh
. "$root/bench/lib/netns.sh"
start_scenario

if ! command -v iptables >/dev/null; then
    echo "skipped: iptables is not installed (apt-get install iptables)" >&2
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi

delete_namespaces
make_admin_material "$size_mib" natpatch

# The public network: a bridge in pmnt-net with the relay, the publisher
# and the outside ends of both NAT routers on it.
make_ns pmnt-net
in_ns pmnt-net ip link add br0 type bridge
in_ns pmnt-net ip link set br0 up
# Joins namespace $1 to the public bridge with address $2.
join_public() {
    local ns=$1 addr=$2
    ip link add "$ns-p" type veth peer name "$ns-q"
    ip link set "$ns-p" netns pmnt-net
    ip link set "$ns-q" netns "$ns"
    in_ns pmnt-net ip link set "$ns-p" master br0 up
    in_ns "$ns" ip addr add "$addr/24" dev "$ns-q"
    in_ns "$ns" ip link set "$ns-q" up
}
make_ns pmnt-relay
join_public pmnt-relay 10.91.0.2
make_ns pmnt-src
join_public pmnt-src 10.91.0.3

# A NAT router $1 with public address $2 and a host namespace $3 at
# 192.168.$4.2 behind it. The router masquerades outbound flows and lets
# inbound packets through only for flows the inside started.
make_nat() {
    local nat=$1 public=$2 host=$3 net=$4
    make_ns "$nat"
    join_public "$nat" "$public"
    make_ns "$host"
    link_ns "$nat" "$host" "$host-l" "192.168.$net.1" "192.168.$net.2" 24
    in_ns "$host" ip route add default via "192.168.$net.1"
    in_ns "$nat" sysctl -qw net.ipv4.ip_forward=1
    in_ns "$nat" iptables -t nat -A POSTROUTING -o "$nat-q" -j MASQUERADE
    in_ns "$nat" iptables -A FORWARD -i "$nat-q" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    in_ns "$nat" iptables -A FORWARD -i "$nat-q" -j DROP
    # Unsolicited packets to the router itself are dropped as well, as home
    # routers do. Otherwise the kernel replies to them and keeps a conntrack
    # entry for the flow, which moves the masqueraded port of the hole
    # punch the inside host sends a moment later.
    in_ns "$nat" iptables -A INPUT -i "$nat-q" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    in_ns "$nat" iptables -A INPUT -i "$nat-q" -j DROP
}
make_nat pmnt-nat1 10.91.0.11 pmnt-a 1
make_nat pmnt-nat2 10.91.0.12 pmnt-b 2

# The public side has no route to a NATed host's private address.
if in_ns pmnt-relay ip route get 192.168.1.2 >/dev/null 2>&1; then
    fail "the public network has a route to the NATed host"
fi

start_node pmnt-relay "$work/relay" relay hq --relay-server --dial-range 10.91.0.0/16
relay_addr="/ip4/10.91.0.2/udp/4001/quic-v1/p2p/$(head -1 "$work/relay/listen.addrs" | sed 's#.*/p2p/##')"
start_node pmnt-src "$work/src" src hq --dial-range 10.91.0.0/16 --bootstrap "$relay_addr"
start_node pmnt-a "$work/a" nat-a branch-a --observer --dial-range 10.91.0.0/16 \
    --bootstrap "$relay_addr" --relay "$relay_addr"
# B learns A's circuit address by peer exchange when it connects, so A's
# reservation must be in place first.
for _ in $(seq 1 100); do
    grep -q p2p-circuit "$work/a/listen.addrs" && break
    sleep 0.1
done
grep -q p2p-circuit "$work/a/listen.addrs" || fail "node A got no relay reservation"
sleep 1
start_node pmnt-b "$work/b" nat-b branch-b --dial-range 10.91.0.0/16 \
    --bootstrap "$relay_addr" --relay "$relay_addr"
sleep 3

in_ns pmnt-src "$signer_bin" publish --node "$(cat "$work/src/control.url")" "$work/patch" "$work/policy.bin" >/dev/null
# A collects reports from all four nodes; B's can only arrive through the
# relay circuit or a connection it set up.
wait_installed pmnt-a "$work/a" 4 ${PMNT_WAIT:-180} || fail "the NATed observer did not see four installs"
cmp -s "$work/payload.bin" "$work/b/installed.bin" || fail "node B did not install the patch payload"

b_at_a=$(in_ns pmnt-a "$signer_bin" status --node "$(cat "$work/a/control.url")" --json 2>/dev/null | tail -1 |
    python3 -c 'import json, sys
data = json.load(sys.stdin)
print(sum(1 for r in data.get("reports", []) if r.get("host") == "nat-b"
          for p in r.get("patches", []) if p["state"] == "installed"))')
[ "$b_at_a" -ge 1 ] || fail "observer A holds no install report from node B"
grep -q "relay circuit opened" "$work/relay/node.log" || fail "the relay opened no circuit"

# Prints how node in namespace $1 (data folder $2) is connected to host $3:
# direct, relayed or absent.
connection_to() {
    local ns=$1 dir=$2 host=$3
    in_ns "$ns" python3 - "$(cat "$dir/control.url")" "$host" <<'PY'
import json, sys, urllib.request
peers = json.load(urllib.request.urlopen(sys.argv[1] + "/v1/peers"))
match = [p for p in peers if p["host"] == sys.argv[2]]
print("absent" if not match else ("direct" if match[0]["direct"] else "relayed"))
PY
}
# Hole punching starts when the circuit opens; wait for its outcome.
for _ in $(seq 1 30); do
    cat "$work/a/node.log" "$work/b/node.log" | grep -q "hole punch" && break
    sleep 1
done
link=$(connection_to pmnt-b "$work/b" nat-a)
punched=$(cat "$work/a/node.log" "$work/b/node.log" | grep -c "hole punch succeeded" || true)
echo "nat: B-A connection is $link now; hole punch successes logged: $punched" >&2
echo "{\"b_to_a\": \"$link\", \"hole_punch_successes\": $punched}"
echo "1 passed, 0 failed"
