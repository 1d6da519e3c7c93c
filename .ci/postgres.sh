#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the store tests, in a temporary folder.
#
#   eval "$(.ci/postgres.sh start)"   # starts it; prints the export lines the tests read
#   .ci/postgres.sh stop              # stops it and deletes the folder ($ANCHORBOT_PG_DIR)
#
# The server refuses to run as root, so as root it runs as the `postgres` user (Debian's
# package creates it); otherwise as the current user. It listens on a free port of 127.0.0.1
# only, with password (scram) authentication and a random password, and TLS with a
# certificate signed by a CA made for it (ANCHORBOT_TEST_DATABASE_CA), so `sslmode=require`
# and `verify-full` can be tested. Durability is off (nothing in it outlives the run), unless
# ANCHORBOT_PG_DURABLE=1 (benchmarks).
set -euo pipefail

bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
    dir=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
  fi
  if [ ! -x "$dir/initdb" ]; then
    echo "postgres.sh: initdb not found; run .ci/setup.sh (it installs Debian's postgresql)" >&2
    exit 1
  fi
  echo "$dir"
}

# Runs a command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A port nothing listens on (the server's own bind check catches a race; start retries).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# A CA and a server certificate for 127.0.0.1 and localhost, signed by it.
make_certs() {
  local dir=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=anchorbot test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" >/dev/null 2>&1 || return 1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1 || return 1
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" >/dev/null 2>&1 ||
    return 1
  rm -f "$dir/ca.key" "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
  chmod 600 "$dir/server.key"
  chmod 644 "$dir/ca.crt" "$dir/server.crt"
}

# Reports a failed start, removes what it made, and exits.
fail() {
  local dir=$1 what=$2
  echo "postgres.sh: $what failed" >&2
  for log in initdb.log server.log; do
    [ -f "$dir/$log" ] && cat "$dir/$log" >&2
  done
  rm -rf "$dir"
  exit 1
}

start() {
  local bin dir password port
  bin=$(bindir)
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "postgres.sh: running as root needs the 'postgres' user (Debian's postgresql creates it)" >&2
    exit 1
  fi
  dir=$(mktemp -d /tmp/anchorbot-pg.XXXXXX)
  chmod 755 "$dir"
  password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  (umask 077 && printf '%s\n' "$password" >"$dir/pwfile")
  make_certs "$dir" || fail "$dir" "making the TLS certificate (openssl)"
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres: "$dir"
  fi
  # A natural-language collation where the server has ICU (PostgreSQL 15+), as managed
  # databases have: the store must not depend on the database's collation for its order.
  local init=("$bin/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256
    --pwfile="$dir/pwfile" -E UTF8 --locale=C.UTF-8)
  if ! as_owner "${init[@]}" --locale-provider=icu --icu-locale=en-US >"$dir/initdb.log" 2>&1; then
    as_owner rm -rf "$dir/data"
    as_owner "${init[@]}" >"$dir/initdb.log" 2>&1 || fail "$dir" "initdb"
  fi
  rm -f "$dir/pwfile"
  # Durability off for tests (nothing outlives the run); ANCHORBOT_PG_DURABLE=1 keeps
  # PostgreSQL's defaults, for benchmarks whose figures must include the commit's fsync.
  local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  [ "${ANCHORBOT_PG_DURABLE:-}" = "1" ] && durability=""
  local tries=0
  while :; do
    port=$(free_port)
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir \
          -c max_connections=200 $durability \
          -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key" \
      start >/dev/null; then
      break
    fi
    tries=$((tries + 1))
    if [ "$tries" -ge 3 ]; then
      fail "$dir" "starting the server"
    fi
  done
  echo "export ANCHORBOT_PG_DIR=$dir"
  echo "export ANCHORBOT_TEST_DATABASE_URL=postgres://postgres:$password@127.0.0.1:$port/postgres"
  echo "export ANCHORBOT_TEST_DATABASE_CA=$dir/ca.crt"
  echo "export ANCHORBOT_REQUIRE_POSTGRES=1"
  echo "postgres.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, in $dir" >&2
}

stop() {
  local dir=${1:-${ANCHORBOT_PG_DIR:-}}
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    echo "postgres.sh: no cluster to stop (give its folder, or set ANCHORBOT_PG_DIR)" >&2
    return 0
  fi
  case "$dir" in
    /tmp/anchorbot-pg.*) ;;
    *) echo "postgres.sh: $dir is not a folder this script made" >&2; exit 1 ;;
  esac
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start|stop [folder]" >&2; exit 2 ;;
esac
