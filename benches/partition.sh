#!/usr/bin/env bash
# Two quickstart replicas on separate hosts (network namespaces, veth links) and
# one PostgreSQL server, measured over real HTTP from a third place:
#   1. revocation propagation: a token revoked on B (DELETE /token/session) until
#      A, which had it cached, answers 401: p50, p99, max;
#   2. a silent cut: the database's route back to A blackholed (A's packets
#      arrive, nothing comes back, no error on A's side), a token A had cached
#      revoked on B: how long A still accepted it
#      (the exposure window), what it answered next, how long each refusal took
#      while cut off, and how long A took to serve again once the route was back.
#
#   sudo bash benches/partition.sh [propagation rounds] [cut rounds]   (default 300, 10)
#
# Needs root (ip netns) and PostgreSQL's server binaries. Builds the quickstart
# with the postgres feature (debug: the figures are network and database bound).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-300}
cuts=${2:-10}
[ "$(id -u)" = 0 ] || { echo "benches/partition.sh: needs root for ip netns" >&2; exit 2; }
cargo build --quiet --features postgres --example quickstart
bin=$PWD/target/debug/examples/quickstart
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
work=$(mktemp -d /tmp/scopegate-partition.XXXXXX)
chown nobody:nogroup "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
as_pg() { setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; }
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  as_pg "$pgbin/pg_ctl" stop -m immediate -D "$work/data" >/dev/null 2>&1 || true
  ip netns del sg_a 2>/dev/null || true
  ip netns del sg_b 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Host A is driven at 10.77.1.2 from 10.77.1.1, and reaches the database at
# 10.77.1.3 from 10.77.1.4 (so a route to 10.77.1.4 cuts only that); host B
# (10.77.2.2) reaches it at 10.77.2.1.
for n in a b; do
  ip netns del "sg_$n" 2>/dev/null || true
  ip netns add "sg_$n"
  ip link add "sg_${n}0" type veth peer name "sg_${n}1"
  ip link set "sg_${n}1" netns "sg_$n"
  ip netns exec "sg_$n" ip link set lo up
done
ip addr add 10.77.1.1/24 dev sg_a0
ip addr add 10.77.1.3/24 dev sg_a0
ip addr add 10.77.2.1/24 dev sg_b0
ip link set sg_a0 up
ip link set sg_b0 up
ip netns exec sg_a ip addr add 10.77.1.2/24 dev sg_a1
ip netns exec sg_a ip addr add 10.77.1.4/24 dev sg_a1
ip netns exec sg_a ip link set sg_a1 up
ip netns exec sg_a ip route add 10.77.1.3/32 dev sg_a1 src 10.77.1.4
ip netns exec sg_b ip addr add 10.77.2.2/24 dev sg_b1
ip netns exec sg_b ip link set sg_b1 up

as_pg "$pgbin/initdb" -D "$work/data" -U postgres --auth=trust --no-sync >/dev/null
echo "host all all 10.77.0.0/16 trust" >>"$work/data/pg_hba.conf"
as_pg "$pgbin/pg_ctl" start -w -D "$work/data" -l "$work/log" \
  -o "-p $port -k $work -c listen_addresses=127.0.0.1,10.77.1.3,10.77.2.1 -c max_connections=100" >/dev/null

start() { # host, address, database address
  ip netns exec "sg_$1" env SCOPEGATE_ADDR="$2:3000" SCOPEGATE_DATA="$work/$1" \
    SCOPEGATE_DATABASE_URL="postgres://postgres@$3:$port/postgres" RUST_LOG=error \
    "$bin" >"$work/$1.out" 2>&1 &
  pids+=($!)
}
start a 10.77.1.2 10.77.1.3
sleep 1 # one migrates, then the other
start b 10.77.2.2 10.77.2.1
for addr in 10.77.1.2 10.77.2.2; do
  for _ in $(seq 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://$addr:3000/health', timeout=1)" 2>/dev/null && break
    sleep 0.1
  done
done

ROUNDS=$rounds CUTS=$cuts python3 - <<'EOF'
import base64, http.client, json, os, subprocess, time

A, B = ("10.77.1.2", 3000), ("10.77.2.2", 3000)
BASIC = base64.b64encode(b"bob:bob-pass").decode()

class Host:
    def __init__(self, addr):
        self.addr = addr
        self.conn = http.client.HTTPConnection(*addr, timeout=30)
    def call(self, method, path, token=None, basic=None):
        headers = {}
        if token:
            headers["Authorization"] = "Bearer " + token
        if basic:
            headers["Authorization"] = "Basic " + basic
        try:
            self.conn.request(method, path, headers=headers)
            reply = self.conn.getresponse()
            return reply.status, reply.read()
        except (http.client.HTTPException, OSError):
            self.conn = http.client.HTTPConnection(*self.addr, timeout=30)
            raise

a, b = Host(A), Host(B)

def login():
    status, body = b.call("POST", "/login", basic=BASIC)
    assert status == 200, body
    return json.loads(body)["auth_token"]["token"]

def cached_on_a(token):
    for _ in range(2):
        status, body = a.call("GET", "/me", token)
        assert status == 200, (status, body)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]

def ms(x):
    return f"{x * 1e3:.2f} ms"

# 1. Propagation across hosts.
times, after_ack = [], []
for _ in range(int(os.environ["ROUNDS"])):
    token = login()
    cached_on_a(token)
    started = time.perf_counter()
    status, _ = b.call("DELETE", "/token/session", token)
    assert status == 200
    acked = time.perf_counter()
    while True:
        status, _ = a.call("GET", "/me", token)
        if status == 401:
            break
        assert status == 200, status
    times.append(time.perf_counter() - started)
    after_ack.append(time.perf_counter() - acked)
print("## revocation on host B until host A refuses (over HTTP)")
print("| from | revocations | p50 | p99 | max |\n|---|---|---|---|---|")
for name, xs in [("the start of B's DELETE", times), ("B's answer (the acknowledgement)", after_ack)]:
    print(f"| {name} | {len(xs)} | {ms(pct(xs, .5))} | {ms(pct(xs, .99))} | {ms(max(xs))} |")

# 2. A silent cut between A and the database.
def route(action):
    subprocess.run(["ip", "route", action, "blackhole", "10.77.1.4/32"], check=True)

rows = []
for _ in range(int(os.environ["CUTS"])):
    token = login()
    cached_on_a(token)
    route("add")
    started = time.perf_counter()
    status, _ = b.call("DELETE", "/token/session", token)
    assert status == 200
    accepted = 0.0
    while True:
        status, _ = a.call("GET", "/me", token)
        if status != 200:
            first = status
            break
        accepted = time.perf_counter() - started
    refusals, statuses = [], set()
    for _ in range(100):
        asked = time.perf_counter()
        status, _ = a.call("GET", "/me", token)
        refusals.append(time.perf_counter() - asked)
        statuses.add(status)
        time.sleep(0.005)
    route("del")
    back = time.perf_counter()
    fresh = login()
    while a.call("GET", "/me", fresh)[0] != 200:
        time.sleep(0.01)
    recovered = time.perf_counter() - back
    time.sleep(1.0)  # the next round starts with A's feed back too
    rows.append((accepted, first, refusals, statuses, recovered))
print()
print("## host A cut off from the database (its replies blackholed), a token it had cached revoked on B")
print("| round | accepted until | then | refusals: p50 / max (statuses) | serving again after the route is back |")
print("|---|---|---|---|---|")
for n, (accepted, first, refusals, statuses, recovery) in enumerate(rows, 1):
    print(f"| {n} | {ms(accepted)} | {first} | {ms(pct(refusals, .5))} / {ms(max(refusals))} "
          f"({', '.join(map(str, sorted(statuses)))}) | {ms(recovery)} |")
EOF
