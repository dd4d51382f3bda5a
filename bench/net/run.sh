#!/usr/bin/env bash
# Measures tianping-net's TLS listener against nginx from Debian in the same run: the same
# certificate (ECDSA P-256), TLS 1.3 only, the same 100-byte answer.
#
#   bench/net/run.sh            # 10-second runs
#   DUR=5 bench/net/run.sh      # shorter runs
#
# Figures: keep-alive HTTP/1.1 (wrk -t2 -c64), HTTP/2 (h2load -c64 -m10), full TLS 1.3
# handshakes/s (wrk with `Connection: close`, no resumption), HTTP/3 (the h3_load example;
# nginx 1.22 from Debian has no HTTP/3, so that row has no baseline).
set -euo pipefail

DUR=${DUR:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/tianping-bench-net.XXXXXX)
NGINX_PORT=${NGINX_PORT:-18443}
TP_PORT=${TP_PORT:-18444}
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
mkdir -p "$WORK/nginx/logs"
cat > "$WORK/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/plain;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    keepalive_requests 10000000;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl http2;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        ssl_protocols TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / { return 200 "$BODY\n"; }
    }
}
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" &
PIDS+=($!)
"$BIN/bench_server" "$WORK/cert.pem" "$WORK/key.pem" "$TP_PORT" &
PIDS+=($!)

# Readiness: both answer once before measuring.
for port in "$NGINX_PORT" "$TP_PORT"; do
    for _ in $(seq 1 100); do
        if curl -sk -o /dev/null "https://127.0.0.1:$port/"; then break; fi
        sleep 0.1
    done
    len=$(curl -sk "https://127.0.0.1:$port/" | wc -c)
    [ "$len" = 100 ] || { echo "port $port answers $len bytes, not 100" >&2; exit 1; }
done

wrk_run() { # port, extra args... -> "req/s p99"
    local port=$1; shift
    local out
    out=$(wrk -t2 -c64 -d"${DUR}s" --latency "$@" "https://127.0.0.1:$port/")
    local rps p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    local errs
    errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    echo "$rps $p99 $errs"
}
h2_run() { # port -> "req/s"
    local out
    out=$(h2load -D "$DUR" -c64 -m10 -t2 "https://127.0.0.1:$1/")
    awk '/^finished in/ {gsub(",","",$4); print $4}' <<<"$out"
    awk '/^requests:/ {print "#", $0}' <<<"$out" >&2
}

echo "== duration ${DUR}s per measurement, nginx $(nginx -v 2>&1 | sed 's/.*\///'), 2 cores shared with the load client"
read -r n_h1 n_h1_p99 n_h1_err <<<"$(wrk_run "$NGINX_PORT")" || true
read -r t_h1 t_h1_p99 t_h1_err <<<"$(wrk_run "$TP_PORT")" || true
n_h2=$(h2_run "$NGINX_PORT")
t_h2=$(h2_run "$TP_PORT")
read -r n_hs n_hs_p99 n_hs_err <<<"$(wrk_run "$NGINX_PORT" -H 'Connection: close')" || true
read -r t_hs t_hs_p99 t_hs_err <<<"$(wrk_run "$TP_PORT" -H 'Connection: close')" || true
t_h3=$("$BIN/h3_load" "127.0.0.1:$TP_PORT" "$WORK/ca.pem" localhost 64 10 "$DUR" || echo failed)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
cat <<TABLE

| measurement | nginx | tianping-net | ratio |
|---|---|---|---|
| HTTP/1.1 keep-alive req/s (wrk -t2 -c64) | $n_h1 (p99 $n_h1_p99) | $t_h1 (p99 $t_h1_p99) | $(ratio "$t_h1" "$n_h1") |
| HTTP/2 req/s (h2load -c64 -m10) | $n_h2 | $t_h2 | $(ratio "$t_h2" "$n_h2") |
| full TLS 1.3 handshakes/s (wrk, Connection: close) | $n_hs | $t_hs | $(ratio "$t_hs" "$n_hs") |
| HTTP/3 req/s (h3_load 64 conns x 10 streams) | n/a | $t_h3 | - |
TABLE
[ -z "$n_h1_err$t_h1_err$n_hs_err$t_hs_err" ] || echo "wrk notes: nginx h1: $n_h1_err tianping h1: $t_h1_err nginx hs: $n_hs_err tianping hs: $t_hs_err"
