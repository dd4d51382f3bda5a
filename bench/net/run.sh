#!/usr/bin/env bash
# Measures tianping-net's TLS listener against nginx from Debian in the same run: the same
# certificate (ECDSA P-256), TLS 1.3 only, the same 100-byte answer.
#
#   bench/net/run.sh            # 10-second runs
#   DUR=5 bench/net/run.sh      # shorter runs
#
# Figures: keep-alive HTTP/1.1 (wrk -t2 -c64), HTTP/2 (h2load -c64 -m10), full TLS 1.3
# handshakes/s (wrk with `Connection: close`, no resumption; and the lighter hs_load example,
# first on the two shared cores, then with each server pinned to core 1 and hs_load to core 0),
# HTTP/3 (the h3_load example; nginx 1.22 from Debian has no HTTP/3, so that row has no baseline).
#
#   NGINX_SUITE=aes128 bench/net/run.sh   # nginx also prefers TLS_AES_128_GCM_SHA256 by its own
#                                         # order, as tianping-net does (default: nginx follows
#                                         # the client's order: AES-256 for wrk, AES-128 for hs_load)
set -euo pipefail

DUR=${DUR:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/tianping-bench-net.XXXXXX)
NGINX_PORT=${NGINX_PORT:-18443}
TP_PORT=${TP_PORT:-18444}
# The one-worker servers pinned to core 1, for the server-capacity rows.
NGINX1_PORT=${NGINX1_PORT:-18445}
TP1_PORT=${TP1_PORT:-18446}
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
    apt-get install -y "${need[@]}"
fi

(cd "$ROOT" && cargo build --release -p tianping-net --examples)
BIN="$ROOT/target/release/examples"

# A CA and a leaf (rustls refuses a self-signed CA certificate as a server's end entity).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$WORK/key.pem" -out "$WORK/leaf.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > "$WORK/leaf.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -days 2 -extfile "$WORK/leaf.ext" -out "$WORK/cert.pem" 2>/dev/null

BODY='tianping-bench-0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789ab'
NGINX_SUITES=""
if [ "${NGINX_SUITE:-}" = aes128 ]; then
    NGINX_SUITES="ssl_prefer_server_ciphers on; ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;"
fi
nginx_conf() { # name, workers, port
    mkdir -p "$WORK/$1/logs"
    cat > "$WORK/$1.conf" <<CONF
worker_processes $2;
daemon off;
pid $WORK/$1.pid;
error_log $WORK/$1/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/plain;
    client_body_temp_path $WORK/$1/body;
    proxy_temp_path $WORK/$1/proxy;
    fastcgi_temp_path $WORK/$1/fastcgi;
    uwsgi_temp_path $WORK/$1/uwsgi;
    scgi_temp_path $WORK/$1/scgi;
    keepalive_requests 10000000;
    server {
        listen 127.0.0.1:$3 ssl http2;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        ssl_protocols TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        $NGINX_SUITES
        location / { return 200 "$BODY\n"; }
    }
}
CONF
}
nginx_conf nginx auto "$NGINX_PORT"
nginx_conf nginx1 1 "$NGINX1_PORT"
nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
# Two single-threaded runtimes on SO_REUSEPORT listeners, as nginx runs two worker processes
# (`worker_processes auto` on two cores).
TP_THREADS=${TP_THREADS:-2} "$BIN/bench_server" "$WORK/cert.pem" "$WORK/key.pem" "$TP_PORT" &
TP_PID=$!
PIDS+=($TP_PID)
# One worker process / one single-threaded runtime, on core 1.
taskset -c 1 nginx -p "$WORK/nginx1" -c "$WORK/nginx1.conf" &
NGINX1_PID=$!
PIDS+=($NGINX1_PID)
TP_THREADS=1 taskset -c 1 "$BIN/bench_server" "$WORK/cert.pem" "$WORK/key.pem" "$TP1_PORT" >/dev/null &
TP1_PID=$!
PIDS+=($TP1_PID)

# Readiness: both answer once before measuring.
for port in "$NGINX_PORT" "$TP_PORT" "$NGINX1_PORT" "$TP1_PORT"; do
    for _ in $(seq 1 100); do
        if curl -sk -o /dev/null "https://127.0.0.1:$port/"; then break; fi
        sleep 0.1
    done
    len=$(curl -sk "https://127.0.0.1:$port/" | wc -c)
    [ "$len" = 100 ] || { echo "port $port answers $len bytes, not 100" >&2; exit 1; }
done
# The suite an OpenSSL client (as wrk) gets from each; hs_load prints its own.
for port in "$NGINX_PORT" "$TP_PORT"; do
    echo "== port $port gives an OpenSSL client: $(openssl s_client -connect "127.0.0.1:$port" \
        -servername localhost </dev/null 2>/dev/null | awk '/^New,/ {print $NF}')"
done

# CPU time (user + system, in clock ticks) of a process and its children processes (nginx workers).
cpu_ticks() {
    local total=0 p
    for p in $1 $(pgrep -P "$1" || true); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
TCK=$(getconf CLK_TCK)

wrk_run() { # port, extra args... -> "req/s p99"
    local port=$1; shift
    local out
    out=$(wrk -t2 -c64 -d"${DUR}s" --latency "$@" "https://127.0.0.1:$port/")
    local rps p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" { v=$2; if (v ~ /us$/) { sub(/us$/,"",v); v=v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v=v*1000 }; print v }' <<<"$out")
    local errs
    errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    echo "$rps $p99 $errs"
}
# hs_load: 64 connections; HS_WATCH gives the server's processes, whose CPU time it reads over
# the same window as its own.
hs_run() { # port, server pid, threads, cpu list -> "hs/s client_cpu_share server_cpu_share server_us"
    local out
    out=$(HS_WATCH="$(echo "$2" $(pgrep -P "$2" || true) | tr ' ' ',')" \
        taskset -c "$4" "$BIN/hs_load" "127.0.0.1:$1" "$WORK/ca.pem" localhost 64 "$DUR" "$3")
    echo "# $out" >&2
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
           print v["handshakes/s"], v["client_cpu_share"], v["server_cpu_share"], v["server_us_per_handshake"], v["errors"] }' <<<"$out"
}
h2_run() { # port -> "req/s"
    local out
    out=$(h2load -D "$DUR" -c64 -m10 -t2 "https://127.0.0.1:$1/")
    awk '/^finished in/ {gsub(",","",$4); print $4}' <<<"$out"
    awk '/^requests:/ {print "#", $0}' <<<"$out" >&2
}

ROUNDS=${ROUNDS:-3}
echo "== ${ROUNDS} rounds, ${DUR}s per measurement, nginx $(nginx -v 2>&1 | sed 's/.*\///'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== each round measures nginx then tianping-net back to back; the table shows medians"
declare -A R M
for round in $(seq 1 "$ROUNDS"); do
    for who in nginx tp; do
        if [ "$who" = nginx ]; then port=$NGINX_PORT; else port=$TP_PORT; fi
        read -r rps p99 _ <<<"$(wrk_run "$port")"
        R[$who,h1]+="$rps "; R[$who,h1p99]+="$p99 "
        R[$who,h2]+="$(h2_run "$port") "
        if [ "$who" = nginx ]; then pid=$NGINX_PID; else pid=$TP_PID; fi
        before=$(cpu_ticks "$pid")
        read -r rps _ <<<"$(wrk_run "$port" -H 'Connection: close')"
        after=$(cpu_ticks "$pid")
        R[$who,hs]+="$rps "
        # Handshakes per second of the server's own CPU time: the load client's share removed.
        R[$who,hscpu]+="$(awk -v r="$rps" -v d="$DUR" -v t=$((after - before)) -v k="$TCK" 'BEGIN { if (t > 0) printf "%.0f", r * d / (t / k); else print 0 }') "
        # hs_load on the two shared cores (two threads, as wrk -t2).
        read -r rps ccpu scpu sus errs <<<"$(hs_run "$port" "$pid" 2 0,1)"
        [ "$errs" = 0 ] || { echo "hs_load: $errs errors on port $port" >&2; exit 1; }
        R[$who,ls]+="$rps "; R[$who,lsc]+="$ccpu "; R[$who,lss]+="$scpu "; R[$who,lsus]+="$sus "
        # Server capacity: one worker on core 1, hs_load (one thread) on core 0.
        if [ "$who" = nginx ]; then p1=$NGINX1_PORT; pid1=$NGINX1_PID; else p1=$TP1_PORT; pid1=$TP1_PID; fi
        read -r rps ccpu scpu sus errs <<<"$(hs_run "$p1" "$pid1" 1 0)"
        [ "$errs" = 0 ] || { echo "hs_load: $errs errors on port $p1" >&2; exit 1; }
        R[$who,p]+="$rps "; R[$who,pc]+="$ccpu "; R[$who,ps]+="$scpu "; R[$who,pus]+="$sus "
        R[$who,pcap]+="$(awk -v r="$rps" -v s="$scpu" 'BEGIN { if (s > 0) printf "%.0f", r / s; else print 0 }') "
        echo "round $round $who: h1 ${R[$who,h1]} h2 ${R[$who,h2]} handshakes ${R[$who,hs]} hs_load ${R[$who,ls]} pinned ${R[$who,p]}" >&2
    done
done
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
t_h3=$("$BIN/h3_load" "127.0.0.1:$TP_PORT" "$WORK/ca.pem" localhost 64 10 "$DUR" || echo failed)

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
for k in h1 h1p99 h2 hs hscpu ls lsc lss lsus p pc ps pus pcap; do
    for who in nginx tp; do
        M[$who,$k]=$(echo "${R[$who,$k]}" | sed 's/ms//g' | median)
    done
done
cat <<TABLE

| measurement (median of $ROUNDS) | nginx | tianping-net | ratio |
|---|---|---|---|
| HTTP/1.1 keep-alive req/s (wrk -t2 -c64) | ${M[nginx,h1]} | ${M[tp,h1]} | $(ratio "${M[tp,h1]}" "${M[nginx,h1]}") |
| HTTP/1.1 p99 latency, ms | ${M[nginx,h1p99]} | ${M[tp,h1p99]} | |
| HTTP/2 req/s (h2load -c64 -m10) | ${M[nginx,h2]} | ${M[tp,h2]} | $(ratio "${M[tp,h2]}" "${M[nginx,h2]}") |
| full TLS 1.3 handshakes/s (wrk -t2 -c64, Connection: close) | ${M[nginx,hs]} | ${M[tp,hs]} | $(ratio "${M[tp,hs]}" "${M[nginx,hs]}") |
| full TLS 1.3 handshakes per server CPU-second (wrk) | ${M[nginx,hscpu]} | ${M[tp,hscpu]} | $(ratio "${M[tp,hscpu]}" "${M[nginx,hscpu]}") |
| (a) full handshakes/s, hs_load (2 threads) on the 2 shared cores | ${M[nginx,ls]} | ${M[tp,ls]} | $(ratio "${M[tp,ls]}" "${M[nginx,ls]}") |
| (a) server CPU µs per handshake (lower is better) | ${M[nginx,lsus]} | ${M[tp,lsus]} | $(ratio "${M[nginx,lsus]}" "${M[tp,lsus]}") |
| (a) hs_load's CPU share / server's CPU share (of one core) | ${M[nginx,lsc]} / ${M[nginx,lss]} | ${M[tp,lsc]} / ${M[tp,lss]} | |
| (b) full handshakes/s, server pinned to core 1, hs_load to core 0 | ${M[nginx,p]} | ${M[tp,p]} | $(ratio "${M[tp,p]}" "${M[nginx,p]}") |
| (b) hs_load's CPU share of core 0 / server's of core 1 | ${M[nginx,pc]} / ${M[nginx,ps]} | ${M[tp,pc]} / ${M[tp,ps]} | |
| (b) server CPU µs per handshake (lower is better) | ${M[nginx,pus]} | ${M[tp,pus]} | $(ratio "${M[nginx,pus]}" "${M[tp,pus]}") |
| (b) handshakes per second of one busy server core (hs/s ÷ server CPU share) | ${M[nginx,pcap]} | ${M[tp,pcap]} | $(ratio "${M[tp,pcap]}" "${M[nginx,pcap]}") |
| HTTP/3 (h3_load, 64 connections x 10 streams) | n/a | $t_h3 | |
TABLE
