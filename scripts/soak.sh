#!/usr/bin/env bash
# Soak: steady load on a `moe-edge serve` daemon for a long time, sampling its
# RSS; fails if the RSS grows beyond a bound, the daemon dies, or requests fail.
# A script to run by hand (not CI):
#
#   scripts/soak.sh [MINUTES=30] [CLIENTS=4] [MAX_GROWTH_MB=16]
#   SOAK_BROKER=mosquitto scripts/soak.sh ...   (daemon on an external Mosquitto)
#   SOAK_GAP_S=1 scripts/soak.sh 30 1 2         (a realistic rate: one request a second)
#
# The daemon runs on its embedded broker (or Mosquitto) with the committed bundle
# (models/assist-moe/bundle, board host-cpu). CLIENTS loops each run
# `moe-edge ask` back to back (a fresh MQTT client and reply topic per request,
# so the daemon also sees a steady churn of new clients). RSS is read from
# /proc every 10 s. Baseline: the highest sample of the first fifth of the run
# (warm-up: allocator arenas, expert cache); result: the median of the last
# fifth. Samples go to $SOAK_DIR/rss.tsv (default: a temp dir, printed).
set -euo pipefail

minutes=${1:-30}
clients=${2:-4}
max_growth_mb=${3:-16}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
gap=${SOAK_GAP_S:-0}
if [ -n "${SOAK_BIN:-}" ]; then
    bin=$SOAK_BIN   # a binary built beforehand
else
    nice -n 10 cargo build --release --bin moe-edge 2>&1 | tail -1
    target=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    bin=$target/release/moe-edge
fi
dir=${SOAK_DIR:-$(mktemp -d /tmp/moe-edge-soak.XXXXXX)}
mkdir -p "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
device=soak-$$

pids=()
broker_pid=
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    kill "${daemon:-}" 2>/dev/null || true
    [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
if [ "${SOAK_BROKER:-embedded}" = mosquitto ]; then
    # An external Mosquitto: the daemon's RSS then excludes the broker's.
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n%s' "$port" \
        "$( [ "$(id -u)" = 0 ] && echo 'user root' )" >"$dir/mosquitto.conf"
    mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
    broker_pid=$!
    sleep 0.5
    "$bin" serve --bundle models/assist-moe/bundle --board host-cpu --device-id "$device" \
        --broker "mqtt://127.0.0.1:$port" >"$dir/daemon.log" 2>&1 &
else
    "$bin" serve --bundle models/assist-moe/bundle --board host-cpu --device-id "$device" \
        --listen "127.0.0.1:$port" >"$dir/daemon.log" 2>&1 &
fi
daemon=$!

for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$daemon" 2>/dev/null || { echo "soak: daemon died at start:"; tail "$dir/daemon.log"; exit 1; }
    sleep 0.2
done
# Wait for the daemon to subscribe (its first status message is logged then).
sleep 2

end=$(( $(date +%s) + minutes * 60 ))
for c in $(seq "$clients"); do
    (
        ok=0; fail=0
        while [ "$(date +%s)" -lt "$end" ]; do
            # An in-domain command with the catalogue's tools: the device
            # answers it (out-of-domain requests get `no_route` with no hop).
            if "$bin" ask "set the volume to $(( (ok + c) % 10 ))" \
                --broker "mqtt://127.0.0.1:$port" --device-id "$device" \
                --max-tokens 32 --timeout-ms 30000 >/dev/null 2>>"$dir/client-$c.err"; then
                ok=$((ok + 1))
            else
                fail=$((fail + 1))
            fi
            [ "$gap" = 0 ] || sleep "$gap"
        done
        echo "$ok $fail" >"$dir/client-$c.count"
    ) &
    pids+=($!)
done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$daemon/status" 2>/dev/null || echo 0; }
start=$(date +%s)
printf 'seconds\trss_kb\n' >"$dir/rss.tsv"
echo "soak: $minutes min, $clients clients, daemon pid $daemon, samples in $dir/rss.tsv"
while [ "$(date +%s)" -lt "$end" ]; do
    if ! kill -0 "$daemon" 2>/dev/null; then
        echo "soak: FAIL the daemon died"; tail "$dir/daemon.log"; exit 1
    fi
    t=$(( $(date +%s) - start ))
    r=$(rss_kb)
    printf '%s\t%s\n' "$t" "$r" >>"$dir/rss.tsv"
    if [ $((t % 60)) -lt 10 ]; then echo "  t=${t}s rss=$((r / 1024)) MB"; fi
    sleep 10
done
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()

ok=0; fail=0
for c in $(seq "$clients"); do
    read -r o f <"$dir/client-$c.count"
    ok=$((ok + o)); fail=$((fail + f))
done
errors=$(grep -c ' ERROR ' "$dir/daemon.log" || true)
python3 - "$dir/rss.tsv" "$max_growth_mb" "$ok" "$fail" "$minutes" "$errors" <<'PY'
import statistics, sys
path, bound, ok, fail, minutes = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
errors = int(sys.argv[6])
rows = [l.split('\t') for l in open(path).read().split('\n')[1:] if l]
rss = [int(r[1]) / 1024 for r in rows]
n = len(rss)
fifth = max(1, n // 5)
base = max(rss[:fifth])
final = statistics.median(rss[-fifth:])
growth = final - base
print(f"soak: {minutes:g} min, {ok} requests ok, {fail} failed ({ok / (minutes * 60):.1f} req/s); "
      f"RSS first {rss[0]:.1f} MB, warm baseline {base:.1f} MB, final median {final:.1f} MB, "
      f"peak {max(rss):.1f} MB, growth {growth:+.1f} MB (bound {bound:g} MB), {n} samples, "
      f"{errors} ERROR log lines")
bad = []
if growth > bound:
    bad.append(f"RSS grew {growth:.1f} MB > {bound:g} MB")
if ok == 0 or fail > ok // 100:
    bad.append(f"{fail} of {ok + fail} requests failed")
if errors:
    bad.append(f"{errors} ERROR lines in the daemon log")
if bad:
    print("soak: FAIL " + "; ".join(bad))
    sys.exit(1)
print("soak: PASS")
PY
