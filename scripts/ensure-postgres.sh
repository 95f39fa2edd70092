#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers and prints its base URL
# (postgres://USER@HOST:PORT) on stdout; progress goes to stderr.
#
#  1. a server at $PGHOST_URL (default 127.0.0.1:5432) that answers is used;
#  2. else the machine's own cluster is started with pg_ctlcluster, if any;
#  3. else a throwaway cluster is created from the installed binaries
#     (initdb/pg_ctl) under ${LEDGER_PG_DIR:-${TMPDIR:-/tmp}/booking-ledger-pg}
#     on port 54329, and left running for the next call;
#  4. with --install, and when even the binaries are missing, postgresql is
#     installed with apt-get first (CI).
set -euo pipefail

install=false
[ "${1:-}" = "--install" ] && install=true

log() { echo "ensure-postgres: $*" >&2; }

answers() { # host port
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$1" -p "$2" -t 2
  else
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
  fi
}

bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if answers 127.0.0.1 5432; then
  echo "postgres://postgres@127.0.0.1:5432"
  exit 0
fi

if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ "$(id -u)" = 0 ]; then
  for v in $(ls /etc/postgresql); do
    log "starting the machine's cluster $v/main"
    pg_ctlcluster --skip-systemctl-redirect "$v" main start >&2 2>&1 || true
  done
  for _ in $(seq 1 20); do
    if answers 127.0.0.1 5432; then
      echo "postgres://postgres@127.0.0.1:5432"
      exit 0
    fi
    sleep 0.5
  done
fi

if [ -z "$(bindir)" ] && $install && command -v apt-get >/dev/null 2>&1; then
  log "installing postgresql with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi

bin=$(bindir)
if [ -z "$bin" ]; then
  log "no PostgreSQL server answers and no PostgreSQL binaries are installed"
  exit 1
fi

dir=${LEDGER_PG_DIR:-${TMPDIR:-/tmp}/booking-ledger-pg}
port=54329
if answers 127.0.0.1 "$port"; then
  echo "postgres://postgres@127.0.0.1:$port"
  exit 0
fi

run() { # runs as the postgres user when we are root: initdb refuses root
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown -R postgres "$dir"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

mkdir -p "$dir"
exec 9>"$dir.lock"
flock 9
if ! answers 127.0.0.1 "$port"; then
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    log "creating a throwaway cluster in $dir/data"
    run "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >&2
  fi
  log "starting the throwaway cluster on 127.0.0.1:$port"
  run "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on" start >&2
fi
echo "postgres://postgres@127.0.0.1:$port"
