#!/usr/bin/env bash
# An air-gapped site: its namespace has no link at all, so its nodes can
# reach nothing outside it. A patch arrives only as a bundle file imported
# into one of its nodes; every site node installs it; the site observer's
# signed reports travel back as a file and are imported by the admin's
# observer, whose status then covers the air-gapped hosts. Damaged,
# truncated and foreign bundles are rejected against the real node.
#
# Usage: tests/netns/airgap.sh   (needs root; exits 1 on any failure)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${PATCHMESH_BIN:-$root/target/debug}
node_bin=$bin/patchmesh-node
signer_bin=$bin/patchmesh-signer
prefix=pmag
work=$(mktemp -d /tmp/pmag.XXXXXX)
# shellcheck source=../../bench/lib/netns.sh
. "$root/bench/lib/netns.sh"
cleanup() {
    delete_namespaces
    [ -n "${PMAG_KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT INT TERM
fail() {
    echo "FAIL: $*" >&2
    for log in "$work"/*/node.log; do
        echo "--- $log" >&2
        tail -20 "$log" >&2
    done
    exit 1
}

delete_namespaces
make_admin_material 4 shipboard
make_ns pmag-admin
make_ns pmag-site

# The admin's observer, on the connected side.
listen_port=0 start_node pmag-admin "$work/admin" admin hq --observer
admin_url=$(cat "$work/admin/control.url")
in_ns pmag-admin "$signer_bin" publish --node "$admin_url" "$work/patch" "$work/policy.bin" >/dev/null

# The air-gapped site: an observer and two more nodes on its own loopback.
listen_port=0 start_node pmag-site "$work/s0" ship-0 ship --observer
site_addr=$(grep quic "$work/s0/listen.addrs" | grep 127.0.0.1 | head -1)
for i in 1 2; do
    listen_port=0 start_node pmag-site "$work/s$i" "ship-$i" ship --bootstrap "$site_addr"
done
site_url=$(cat "$work/s0/control.url")

"$signer_bin" bundle create --out "$work/one.bundle" --root "$work/root.bin" \
    --policy "$work/policy.bin" --patch "$work/patch" --key "$work/admin.key" >/dev/null 2>&1

# Bad bundles first: each is rejected and leaves the node's store as it was.
size=$(stat -c %s "$work/one.bundle")
head -c $((size / 2)) "$work/one.bundle" >"$work/truncated.bundle"
cp "$work/one.bundle" "$work/flipped.bundle"
offset=$((size - 4096))
printf '\xff' | dd of="$work/flipped.bundle" bs=1 seek="$offset" conv=notrunc status=none
for bad in truncated flipped; do
    if in_ns pmag-site "$node_bin" bundle import "$work/$bad.bundle" --node "$site_url" 2>"$work/$bad.err"; then
        fail "$bad bundle was accepted"
    fi
    grep -q . "$work/$bad.err" || fail "$bad bundle rejected without a message"
    echo "rejected $bad bundle: $(tail -1 "$work/$bad.err")" >&2
done
sleep 2
[ "$(count_installed pmag-site "$work/s0")" = 0 ] || fail "a node installed from a rejected bundle"

# A bundle of another fleet: its own root and keys.
mkdir -p "$work/other"
"$signer_bin" keygen --out "$work/other/admin.key" >/dev/null 2>&1
"$signer_bin" root init --key "$work/other/admin.key" --fleet other --out "$work/other/root.bin" >/dev/null 2>&1
"$signer_bin" bundle create --out "$work/other.bundle" --root "$work/other/root.bin" \
    --policy "$work/policy.bin" --key "$work/other/admin.key" >/dev/null 2>&1 || true
if [ -s "$work/other.bundle" ]; then
    if in_ns pmag-site "$node_bin" bundle import "$work/other.bundle" --node "$site_url" 2>"$work/other.err"; then
        fail "another fleet's bundle was accepted"
    fi
    echo "rejected other fleet's bundle: $(tail -1 "$work/other.err")" >&2
fi

# The good bundle: every site node installs the patch.
in_ns pmag-site "$node_bin" bundle import "$work/one.bundle" --node "$site_url" >/dev/null ||
    fail "good bundle rejected"
wait_installed pmag-site "$work/s0" 3 120 || fail "site nodes did not install"
expected=$(python3 -c 'import sys, hashlib; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$work/payload.bin")
for i in 0 1 2; do
    got=$(python3 -c 'import sys, hashlib; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$work/s$i/installed.bin")
    [ "$got" = "$expected" ] || fail "ship-$i installed different bytes"
done

# Importing the same bundle again is harmless; an older one after a newer
# one changes nothing either (objects are not above what the node holds).
in_ns pmag-site "$node_bin" bundle import "$work/one.bundle" --node "$site_url" >/dev/null ||
    fail "re-import of the same bundle failed"

# Reports back: export at the site, tamper with a copy, import at the admin.
in_ns pmag-site "$node_bin" reports export --out "$work/ship.reports" --node "$site_url" >/dev/null
cp "$work/ship.reports" "$work/tampered.reports"
rsize=$(stat -c %s "$work/tampered.reports")
printf '\x00' | dd of="$work/tampered.reports" bs=1 seek=$((rsize - 80)) conv=notrunc status=none
if in_ns pmag-admin "$signer_bin" reports import "$work/tampered.reports" --node "$admin_url" 2>"$work/tampered.err"; then
    fail "tampered report file was accepted"
fi
echo "rejected tampered report file: $(tail -1 "$work/tampered.err")" >&2
in_ns pmag-admin "$signer_bin" reports import "$work/ship.reports" --node "$admin_url" >/dev/null ||
    fail "report import failed"
wait_installed pmag-admin "$work/admin" 4 30 || fail "admin observer does not show the air-gapped hosts"
echo "airgap: 3 air-gapped nodes installed from a bundle; their reports reached the admin" >&2
echo "1 passed, 0 failed"
