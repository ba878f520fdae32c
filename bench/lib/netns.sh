# Shared helpers for the scripts that build network namespaces. Sourced,
# not run. Callers set $prefix (namespace name prefix), $work (temp folder),
# $node_bin and $signer_bin before using them.

# Starts a scenario script: makes the work folder $work, and on exit kills
# and deletes the namespaces of $prefix and removes $work, unless the
# variable named ${PREFIX}_KEEP (such as PMNT_KEEP) is set. Then fail()
# prints its message and the tail of every node log and exits 1.
start_scenario() {
    work=$(mktemp -d "/tmp/$prefix.XXXXXX")
    trap finish_scenario EXIT INT TERM
}

finish_scenario() {
    local keep_var
    keep_var="$(echo "$prefix" | tr '[:lower:]' '[:upper:]')_KEEP"
    delete_namespaces
    if [ -n "${!keep_var:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}

fail() {
    echo "FAIL: $*" >&2
    for log in "$work"/*/node.log; do
        echo "--- $log" >&2
        tail -20 "$log" >&2
    done
    exit 1
}

# Runs a command inside namespace $1.
in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# Kills every process in the namespaces named $prefix-* and deletes them.
delete_namespaces() {
    for ns in $(ip netns list 2>/dev/null | awk -v p="^$prefix-" '$0 ~ p {print $1}'); do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
}

# Creates namespace $1 with loopback up.
make_ns() {
    ip netns add "$1"
    in_ns "$1" ip link set lo up
}

# Joins namespaces $1 and $2 with a veth pair named $3-a/$3-b, addresses $4
# (in $1) and $5 (in $2), both with prefix length $6.
link_ns() {
    local left=$1 right=$2 name=$3 left_addr=$4 right_addr=$5 bits=$6
    ip link add "$name-a" type veth peer name "$name-b"
    ip link set "$name-a" netns "$left"
    ip link set "$name-b" netns "$right"
    in_ns "$left" ip addr add "$left_addr/$bits" dev "$name-a"
    in_ns "$left" ip link set "$name-a" up
    in_ns "$right" ip addr add "$right_addr/$bits" dev "$name-b"
    in_ns "$right" ip link set "$name-b" up
}

# Waits up to 10 s for file $1 to be non-empty.
wait_for_file() {
    for _ in $(seq 1 100); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    echo "timed out waiting for $1" >&2
    return 1
}

# Initialises and starts a node in namespace $1 with data folder $2, host $3
# and site $4; further arguments go to `patchmesh-node init`. The node runs
# detached with its folder as working directory and logs to node.log there.
start_node() {
    local ns=$1 dir=$2 host=$3 site=$4
    shift 4
    "$node_bin" init --data-dir "$dir" --root "$work/root.bin" --host "$host" --site "$site" \
        --listen "/ip4/0.0.0.0/udp/${listen_port:-4001}/quic-v1" \
        --listen "/ip4/0.0.0.0/tcp/${listen_port:-4001}" "$@" 2>/dev/null
    # A caller may adjust the config before the node starts.
    if [ -n "${node_config_hook:-}" ]; then "$node_config_hook" "$dir"; fi
    (cd "$dir" && setsid -f ip netns exec "$ns" "$node_bin" run --data-dir "$dir" >"$dir/node.log" 2>&1)
    wait_for_file "$dir/control.url"
    wait_for_file "$dir/listen.addrs"
}

# Prints the number of reports at the node with data folder $2 (run inside
# namespace $1) whose patch state is "installed".
count_installed() {
    local ns=$1 dir=$2
    in_ns "$ns" "$signer_bin" status --node "$(cat "$dir/control.url")" --json 2>/dev/null | tail -1 |
        python3 -c 'import json, sys
try:
    data = json.load(sys.stdin)
except Exception:
    print(0); sys.exit()
print(sum(1 for r in data.get("reports", []) for p in r.get("patches", []) if p["state"] == "installed"))'
}

# Waits until at least $3 installs are reported at node $2 in namespace $1,
# for at most $4 seconds; returns 1 on timeout.
wait_installed() {
    local ns=$1 dir=$2 want=$3 limit=$4
    local deadline=$(($(date +%s) + limit))
    while [ "$(count_installed "$ns" "$dir")" -lt "$want" ]; do
        if [ "$(date +%s)" -gt "$deadline" ]; then
            echo "timed out: $(count_installed "$ns" "$dir") of $want installed" >&2
            return 1
        fi
        sleep 1
    done
}

# Writes admin keys, a root, a patch of $1 MiB named $2 and a policy for it
# into $work.
make_admin_material() {
    local size_mib=$1 name=$2
    "$signer_bin" keygen --out "$work/admin.key" >/dev/null 2>&1
    "$signer_bin" root init --key "$work/admin.key" --out "$work/root.bin" >/dev/null 2>&1
    head -c $((size_mib * 1024 * 1024)) /dev/urandom >"$work/payload.bin"
    "$signer_bin" patch add "$work/payload.bin" --name "$name" --version 1 --severity important \
        --install 'cp {payload} installed.bin' --key "$work/admin.key" --out "$work/patch" >/dev/null 2>&1
    cat >"$work/policy.toml" <<TOML
id = "$name"
version = 1
expires = "2030-01-01T00:00:00Z"
[content]
patches = ["$name@1"]
TOML
    "$signer_bin" policy sign "$work/policy.toml" --key "$work/admin.key" --out "$work/policy.bin" >/dev/null 2>&1
}
