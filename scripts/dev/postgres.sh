#!/usr/bin/env bash
# A local PostgreSQL for development and CI: the runs database the PostgreSQL tests use.
#
#   scripts/dev/postgres.sh up       install (Debian's packages) + start + role and database; idempotent
#   scripts/dev/postgres.sh down     stop the server
#   scripts/dev/postgres.sh status   exit 0 only if the server answers and the test role can log in
#
# No systemd needed: the cluster is started by hand with pg_ctlcluster, detached. The server
# listens on 127.0.0.1 only. The tests read CAMPAIGNS_TEST_POSTGRES_URL, which defaults to
# the role and database made here (see scripts/dev/README.md).
set -euo pipefail

PORT=${PG_DEV_PORT:-5432}
ROLE=${PG_DEV_USER:-campaigns}
PASSWORD=${PG_DEV_PASSWORD:-campaigns}   # a development password, for 127.0.0.1 only
DATABASE=${PG_DEV_DATABASE:-campaigns_test}
CLUSTER=main
TIMEOUT=${PG_DEV_TIMEOUT:-60}
APT_LOG=/var/log/postgres-dev-apt.log

log() { printf '[postgres] %s\n' "$*"; }
die() { printf '[postgres] ERROR: %s\n' "$*" >&2; exit 1; }

version() { # the newest installed server version, e.g. 15
  ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1
}

install_packages() {
  if [[ -n $(version) ]] && command -v pg_ctlcluster >/dev/null; then
    return
  fi
  [[ $(id -u) == 0 ]] || die "installing PostgreSQL needs root (run with sudo)"
  log "installing PostgreSQL from Debian's packages (log: $APT_LOG)"
  # Keep the distribution from starting the server itself: we start it below.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  {
    apt-get -o DPkg::Lock::Timeout=600 update
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
      --no-install-recommends postgresql postgresql-client
  } >>"$APT_LOG" 2>&1 || { tail -n 30 "$APT_LOG" >&2; die "apt-get failed"; }
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
}

ensure_cluster() {
  local v=$1
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$v $CLUSTER"; then
    log "creating cluster $v/$CLUSTER on port $PORT"
    pg_createcluster "$v" "$CLUSTER" --port "$PORT" >/dev/null
  fi
  local conf=/etc/postgresql/$v/$CLUSTER/postgresql.conf
  sed -i -E "s/^#?listen_addresses\s*=.*/listen_addresses = '127.0.0.1'/" "$conf"
  sed -i -E "s/^#?port\s*=.*/port = $PORT/" "$conf"
}

running() { # version
  pg_lsclusters -h | awk -v v="$1" -v c="$CLUSTER" '$1==v && $2==c {print $4}' | grep -q online
}

wait_ready() {
  local deadline=$((SECONDS + TIMEOUT))
  until pg_isready -q -h 127.0.0.1 -p "$PORT"; do
    if ((SECONDS > deadline)); then
      tail -n 30 "/var/log/postgresql/postgresql-$1-$CLUSTER.log" >&2 || true
      die "PostgreSQL did not answer on 127.0.0.1:$PORT within ${TIMEOUT}s"
    fi
    sleep 0.5
  done
}

psql_admin() { # SQL
  runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres -tAc "$1"
}

ensure_role_and_database() {
  local quoted=${PASSWORD//\'/\'\'}
  if [[ $(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'") != 1 ]]; then
    psql_admin "CREATE ROLE \"$ROLE\" LOGIN PASSWORD '$quoted'"
  else
    psql_admin "ALTER ROLE \"$ROLE\" LOGIN PASSWORD '$quoted'"
  fi
  if [[ $(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'") != 1 ]]; then
    psql_admin "CREATE DATABASE \"$DATABASE\" OWNER \"$ROLE\""
  fi
}

healthy() {
  pg_isready -q -h 127.0.0.1 -p "$PORT" &&
    PGPASSWORD=$PASSWORD psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$DATABASE" \
      -tAc 'SELECT 1' >/dev/null 2>&1
}

cmd_up() {
  install_packages
  local v
  v=$(version)
  [[ -n $v ]] || die "no PostgreSQL server found under /usr/lib/postgresql"
  ensure_cluster "$v"
  if ! running "$v"; then
    log "starting PostgreSQL $v ($CLUSTER) on 127.0.0.1:$PORT"
    # pg_ctl detaches the server; setsid keeps it out of this shell's session as well.
    setsid pg_ctlcluster "$v" "$CLUSTER" start </dev/null >/dev/null 2>&1 ||
      { tail -n 30 "/var/log/postgresql/postgresql-$v-$CLUSTER.log" >&2 || true; die "start failed"; }
  fi
  wait_ready "$v"
  ensure_role_and_database
  healthy || die "the server runs but role '$ROLE' cannot log in to '$DATABASE'"
  log "up: postgresql+psycopg://$ROLE:***@127.0.0.1:$PORT/$DATABASE (password: \$PG_DEV_PASSWORD, default 'campaigns')"
}

cmd_down() {
  local v
  v=$(version)
  if [[ -n $v ]] && running "$v"; then
    pg_ctlcluster "$v" "$CLUSTER" stop -m fast
    log "stopped"
  else
    log "not running"
  fi
}

cmd_status() {
  if healthy; then
    log "healthy: 127.0.0.1:$PORT, role '$ROLE', database '$DATABASE'"
  else
    log "not healthy (run: bash scripts/dev/postgres.sh up)"
    exit 1
  fi
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
