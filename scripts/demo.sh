#!/usr/bin/env bash
# make demo: a daemon on a temporary root, a local share on Q:, a file through it, and back.
set -euo pipefail
bin=${NETUSE_BIN:?set NETUSE_BIN to the folder with netused and netusectl}
work=$(mktemp -d /tmp/netuse-demo.XXXXXX)
root=$work/root
share=$work/share
daemon=""

cleanup() {
    if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
        kill -TERM "$daemon"
        wait "$daemon" || true
    fi
    # Anything still mounted below the demo's root goes before the files do.
    awk -v root="$root" '$5 ~ "^"root {print $5}' /proc/self/mountinfo | xargs -r -n1 umount -l
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

mkdir -p "$share"
echo "This file lives on the share." > "$share/readme.txt"
export NETUSE_SOCKET=$root/control.sock

step "Start netused on a temporary root ($root)"
"$bin/netused" --root "$root" --foreground --log-level warning &
daemon=$!
for _ in $(seq 100); do [ -S "$NETUSE_SOCKET" ] && break; sleep 0.05; done

step "Map the local share $share to Q:"
show "$bin/netusectl" use q "$share"

step "Read a file of the share through Q:"
show cat "$root/0/q/readme.txt"

step "Write a file through Q: and find it on the share"
show sh -c "echo 'Written through Q:' > '$root/0/q/hello.txt'"
show cat "$share/hello.txt"

step "List the connections"
show "$bin/netusectl" list

step "Delete Q:"
show "$bin/netusectl" delete q
show "$bin/netusectl" list

step "Stop netused"
kill -TERM "$daemon"
wait "$daemon"
daemon=""
echo "netused stopped; nothing is left mounted under $root."
