#!/bin/bash
# Instructions per request of the gateway, counted by callgrind: a figure this machine's timings
# (±20–40 % between runs) cannot give, for changes of a few per cent.
#
#   [ROW=h2] bench/gateway/instructions.sh BIN [BIN...]   (from the bench workspace, after
#                                                         `cargo build --release -p tianping-bench-gateway`)
#
# For each `tianping` binary BIN, one after the other: `gateway-bench --only ROW --rounds 1` (ROW
# h1 by default, or h2: the HTTP/1.1 or the HTTP/2 row) runs
# with the gateway (and only the gateway) under `valgrind --tool=callgrind`; once the gateway is
# busy (and 8 s more, for the load client's 64 connections to be made: a handshake under callgrind
# takes tens of milliseconds) its counters are zeroed, and WINDOW seconds later (default 12)
# dumped. In that window every
# request calls `Inner::audit_request` exactly once, so the window's instructions divided by
# those calls are the instructions per request, every thread of the gateway included (its audit
# committer too). 16 subjects (`--subjects 16`): the token and assertion caches are warm within
# the first requests, as they are in a real run's steady state; under callgrind the gateway
# answers about 150 requests a second, and with 4,096 subjects nearly every request in the window
# would verify a token and sign an assertion.
#
# Caveats: callgrind counts user-space instructions, not time: not the kernel, not cache misses,
# not waiting on locks. Its CPU has no AVX-512 or SHA extensions, so ring and glibc take other
# paths than on this machine; the same for every binary, so compare binaries with each other,
# not with native figures. Batching differs too (the gateway, not the client, is the bottleneck).
# Needs valgrind (Debian `valgrind`); its output goes to $OUT (default /tmp/tianping-instructions).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bench=$(cd "$here/.." && pwd)
out=${OUT:-/tmp/tianping-instructions}
window=${WINDOW:-12}
row=${ROW:-h1}
mkdir -p "$out"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }

# The `tianping` the bench runs: the gateway under callgrind, every other command as it is.
wrapper="$out/tianping-under-callgrind"
cat > "$wrapper" <<'EOF'
#!/bin/bash
case " $* " in
  *" gateway --zone "*) exec valgrind --tool=callgrind --dump-instr=no \
      --callgrind-out-file="$TP_CG_OUT/callgrind.%p.out" "$TP_CG_BIN" "$@" ;;
  *) exec "$TP_CG_BIN" "$@" ;;
esac
EOF
chmod +x "$wrapper"

# Zeroes the first busy gateway's counters, waits the window, dumps them; prints the pid.
window_of_first_gateway() {
    local pid=""
    while [ -z "$pid" ]; do
        pid=$(pgrep -o -f "valgrind.*gateway --zone" || true)
        sleep 0.5
    done
    local a b
    while true; do
        a=$(awk '{print $14+$15}' "/proc/$pid/stat")
        sleep 1
        b=$(awk '{print $14+$15}' "/proc/$pid/stat")
        [ $((b - a)) -gt 60 ] && break
    done
    sleep 8
    callgrind_control -z "$pid" >/dev/null 2>&1
    sleep "$window"
    callgrind_control -d window "$pid" >/dev/null 2>&1
    echo "$pid"
}

# Instructions and `Inner::audit_request` calls in one dump.
per_request() {
    awk '
        /^summary:/ { total = $2 }
        /^c?fn=\(/ {
            id = $1; sub(/^c?fn=/, "", id)
            name = $0; sub(/^c?fn=\([0-9]+\) ?/, "", name)
            if (name != "") names[id] = name
            if ($0 ~ /^cfn=/) callee = names[id]
        }
        /^calls=/ {
            n = $1; sub(/^calls=/, "", n)
            if (callee ~ /Inner::audit_request$/) calls += n
        }
        END {
            if (calls == 0) { print "no requests in the window"; exit 1 }
            printf "%d instructions, %d requests, %.0f instructions per request\n", total, calls, total / calls
        }' "$1"
}

for bin in "$@"; do
    bin=$(realpath "$bin")
    name=$(basename "$bin")
    dir="$out/$name.$$"
    mkdir -p "$dir"
    window_of_first_gateway > "$dir/pid" &
    watcher=$!
    TP_CG_BIN="$bin" TP_CG_OUT="$dir" "$bench/target/release/gateway-bench" \
        --secs 30 --warm 1 --rounds 1 --only "$row" --subjects 16 --tianping "$wrapper" \
        > "$dir/bench.txt" 2>&1
    wait "$watcher"
    pid=$(cat "$dir/pid")
    printf '%s: ' "$bin"
    per_request "$dir/callgrind.$pid.out.1"
done
