#!/usr/bin/env bash
# A site behind one gateway: its nodes sit on a bridge inside the relay's
# namespace and have no route out; only the relay node is in both networks
# (HQ link shaped with tbf, no IP forwarding). The relay fetches each chunk
# across once, stores it and serves it on the site LAN like any node. The
# test checks every site node installs the patch and that the relay's
# outside interface received at most MAX_RATIO times the patch size.
#
# Usage: tests/netns/relay.sh [SIZE_MIB] [MAX_RATIO]   (needs root)
set -euo pipefail

size_mib=${1:-16}
max_ratio=${2:-1.10}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${PATCHMESH_BIN:-$root/target/debug}
node_bin=$bin/patchmesh-node
signer_bin=$bin/patchmesh-signer
prefix=pmrl
# shellcheck source=../../bench/lib/netns.sh
. "$root/bench/lib/netns.sh"
start_scenario

delete_namespaces
make_admin_material "$size_mib" gateway
make_ns pmrl-hq
make_ns pmrl-relay
link_ns pmrl-hq pmrl-relay pmrl-wan 10.81.1.1 10.81.1.2 30
in_ns pmrl-hq tc qdisc add dev pmrl-wan-a root tbf rate 8mbit burst 32kbit latency 400ms
in_ns pmrl-relay tc qdisc add dev pmrl-wan-b root tbf rate 8mbit burst 32kbit latency 400ms
in_ns pmrl-relay sysctl -qw net.ipv4.ip_forward=0
in_ns pmrl-relay ip link add br0 type bridge
in_ns pmrl-relay ip addr add 10.82.0.1/24 dev br0
in_ns pmrl-relay ip link set br0 up
for i in 1 2 3; do
    make_ns "pmrl-n$i"
    ip link add "pmrl-n$i-a" type veth peer name "pmrl-n$i-b"
    ip link set "pmrl-n$i-a" netns pmrl-relay
    ip link set "pmrl-n$i-b" netns "pmrl-n$i"
    in_ns pmrl-relay ip link set "pmrl-n$i-a" master br0 up
    in_ns "pmrl-n$i" ip addr add "10.82.0.1$i/24" dev "pmrl-n$i-b"
    in_ns "pmrl-n$i" ip link set "pmrl-n$i-b" up
done

start_node pmrl-hq "$work/hq" hq hq --observer --dial-range 10.81.0.0/16
hq_peer=$(head -1 "$work/hq/listen.addrs" | sed 's#.*/p2p/##')
start_node pmrl-relay "$work/relay" gateway branch --observer \
    --dial-range 10.81.0.0/16 --dial-range 10.82.0.0/16 \
    --bootstrap "/ip4/10.81.1.1/udp/4001/quic-v1/p2p/$hq_peer"
relay_peer=$(head -1 "$work/relay/listen.addrs" | sed 's#.*/p2p/##')
# Site nodes cannot reach other sites, so they see no direct link outside
# and leave WAN fetches to the relay without a --no-wan flag.
for i in 1 2 3; do
    start_node "pmrl-n$i" "$work/n$i" "branch-$i" branch --dial-range 10.82.0.0/16 \
        --bootstrap "/ip4/10.82.0.1/udp/4001/quic-v1/p2p/$relay_peer"
done
sleep 3
rx_before=$(in_ns pmrl-relay cat /sys/class/net/pmrl-wan-b/statistics/rx_bytes)
in_ns pmrl-hq "$signer_bin" publish --node "$(cat "$work/hq/control.url")" "$work/patch" "$work/policy.bin" >/dev/null
wait_installed pmrl-relay "$work/relay" 4 240 || fail "site nodes behind the relay did not install"
rx_after=$(in_ns pmrl-relay cat /sys/class/net/pmrl-wan-b/statistics/rx_bytes)
patch_bytes=$((size_mib * 1024 * 1024))
ratio=$(python3 -c "print(round(($rx_after - $rx_before) / $patch_bytes, 4))")
echo "relay: outside link carried ${ratio}x the patch for 4 installs behind it" >&2
# Chunk bytes the relay and the site nodes took from other sites, by their
# own count: exactly one copy of the patch when no chunk crossed twice.
# The wire ratio above also counts QUIC overhead and retransmissions on the
# shaped link, which vary from run to run.
cross_site=0
for log in "$work"/relay/node.log "$work"/n*/node.log; do
    bytes=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep 'download complete' |
        sed -n 's/.*cross_site=\([0-9]*\).*/\1/p' | tail -1)
    cross_site=$((cross_site + ${bytes:-0}))
done
echo "relay: site took $cross_site chunk bytes from other sites (patch $patch_bytes)" >&2
[ "$cross_site" -eq "$patch_bytes" ] ||
    fail "the site took $cross_site chunk bytes from other sites, not one copy of $patch_bytes"
python3 -c "import sys; sys.exit(0 if $ratio <= $max_ratio else 1)" ||
    fail "relay's outside link carried ${ratio}x the patch (limit ${max_ratio}x)"
echo "{\"patch_bytes\": $patch_bytes, \"site_cross_site_bytes\": $cross_site, \"relay_wire_ratio\": $ratio}"
echo "1 passed, 0 failed"
