#!/usr/bin/env bash
# Single-node Slurm cluster (with accounting) for development and CI.
#
#   scripts/dev/slurm-cluster.sh up      install (Debian 12) + start everything; idempotent
#   scripts/dev/slurm-cluster.sh down    cancel all jobs, stop all daemons
#   scripts/dev/slurm-cluster.sh status  health check; exit 0 only if fully healthy
#   scripts/dev/slurm-cluster.sh reset   stop Slurm, wipe controller state + accounting DB, up
#
# Daemons are started by hand (no systemd needed), in order:
#   munged -> mariadbd -> slurmdbd -> slurmctld -> slurmd
# See scripts/dev/README.md for the settings and environment variables.
set -euo pipefail

# ---------------------------------------------------------------- settings --
CLUSTER_NAME=${SLURM_DEV_CLUSTER_NAME:-campaigns}
CPUS=${SLURM_DEV_CPUS:-8}
MAX_ARRAY_SIZE=${SLURM_DEV_MAX_ARRAY_SIZE:-21}
MAX_JOB_COUNT=${SLURM_DEV_MAX_JOB_COUNT:-10000}
TIMEOUT=${SLURM_DEV_TIMEOUT:-60}           # seconds to wait for each daemon
DB_USER=slurm
DB_PASS=${SLURM_DEV_DB_PASSWORD:-slurmdev} # local MariaDB bound to 127.0.0.1 only
DB_NAME=slurm_acct_db

PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server
          openmpi-bin libopenmpi-dev libpmix2)

NODE=$(hostname -s)
CONF_DIR=/etc/slurm
SLURM_CONF=$CONF_DIR/slurm.conf
DBD_CONF=$CONF_DIR/slurmdbd.conf
LOG_DIR=/var/log/slurm
STATE_DIR=/var/run/slurm-dev          # hashes of the configs the daemons run with
CTLD_STATE=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
MUNGE_KEY=/etc/munge/munge.key

# daemon -> pid file / log file
declare -A PIDFILE=(
  [munged]=/run/munge/munged.pid
  [mariadbd]=/run/mysqld/mysqld.pid
  [slurmdbd]=/var/run/slurmdbd.pid
  [slurmctld]=/var/run/slurmctld.pid
  [slurmd]=/var/run/slurmd.pid
)
declare -A LOGFILE=(
  [munged]=/var/log/munge/munged.log
  [mariadbd]=$LOG_DIR/mariadbd.log
  [slurmdbd]=$LOG_DIR/slurmdbd.log
  [slurmctld]=$LOG_DIR/slurmctld.log
  [slurmd]=$LOG_DIR/slurmd.log
)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

# ----------------------------------------------------------------- helpers --
log()  { printf '[slurm-cluster] %s\n' "$*"; }
warn() { printf '[slurm-cluster] WARNING: %s\n' "$*" >&2; }
die()  { printf '[slurm-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

show_log_tail() { # file
  local f=$1
  if [[ -r $f ]]; then
    printf -- '----- last 30 lines of %s -----\n' "$f" >&2
    tail -n 30 "$f" >&2 || true
    printf -- '-----\n' >&2
  else
    printf '(no log file %s)\n' "$f" >&2
  fi
}

fail_daemon() { # daemon message
  printf '[slurm-cluster] ERROR: %s\n' "$2" >&2
  show_log_tail "${LOGFILE[$1]}"
  exit 1
}

check_settings() {
  local v
  for v in CPUS MAX_ARRAY_SIZE MAX_JOB_COUNT TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "SLURM_DEV_$v must be a positive integer (got '${!v}')"
  done
  [[ $CLUSTER_NAME =~ ^[a-z][a-z0-9_]*$ ]] ||
    die "SLURM_DEV_CLUSTER_NAME must be lower-case letters, digits, '_' (got '$CLUSTER_NAME')"
  [[ $DB_PASS =~ ^[A-Za-z0-9_.+-]+$ ]] ||
    die "SLURM_DEV_DB_PASSWORD: use only letters, digits and _ . + -"
}

need_root() { [[ $(id -u) -eq 0 ]] || die "'$1' must run as root"; }

# A process is alive if /proc/PID/stat exists and its state is not Z/X.
# (Without a reaping init, a stopped daemon lingers as a zombie and kill -0 lies.)
pid_alive() { # pid
  local pid=$1 stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }          # drop "pid (comm) " -- comm may contain spaces
  [[ ${stat%% *} != [ZX] ]]
}

# Live PIDs of a daemon: the PID in its pid file, plus any live process whose
# command name matches (covers a missing/stale pid file).
daemon_pids() { # name
  local name=$1 pid comm f
  local -A seen=()
  if [[ -r ${PIDFILE[$name]} ]]; then
    pid= comm=
    { read -r pid <"${PIDFILE[$name]}"; } 2>/dev/null || true
    pid=${pid//[^0-9]/}
    if [[ -n $pid ]]; then { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || true; fi
    if [[ $comm == "$name" ]] && pid_alive "$pid"; then
      seen[$pid]=1
    fi
  fi
  for f in /proc/[0-9]*/comm; do
    { read -r comm <"$f"; } 2>/dev/null || continue
    [[ $comm == "$name" ]] || continue
    pid=${f#/proc/}; pid=${pid%/comm}
    pid_alive "$pid" && seen[$pid]=1
  done
  [[ ${#seen[@]} -gt 0 ]] && printf '%s\n' "${!seen[@]}" | sort -n
  return 0
}

daemon_alive() { [[ -n $(daemon_pids "$1") ]]; }

# Wait (bounded) until `check` succeeds; fail early with the log tail if the
# daemon process is gone.
wait_ready() { # daemon what check-command...
  local name=$1 what=$2; shift 2
  local start=$SECONDS deadline=$((SECONDS + TIMEOUT))
  local why=
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - start >= 2 )) && ! daemon_alive "$name"; then
      why="$name exited while waiting for it"
    elif (( SECONDS >= deadline )); then
      why="$name not ready after ${TIMEOUT}s"
    else
      sleep 0.2; continue
    fi
    printf '[slurm-cluster] last output of readiness check (%s):\n' "$what" >&2
    "$@" 2>&1 | tail -n 5 | sed 's/^/    /' >&2 || true
    fail_daemon "$name" "$why"
  done
}

stop_daemon() { # name [timeout]
  local name=$1 t=${2:-30} pids deadline
  pids=$(daemon_pids "$name")
  if [[ -z $pids ]]; then
    rm -f "${PIDFILE[$name]}"
    return 0
  fi
  log "stopping $name (pid $(echo $pids))"
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  deadline=$((SECONDS + t))
  while daemon_alive "$name"; do
    if (( SECONDS >= deadline )); then
      warn "$name did not exit within ${t}s, sending SIGKILL"
      pids=$(daemon_pids "$name")
      # shellcheck disable=SC2086
      [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
      sleep 1
      daemon_alive "$name" && die "could not stop $name"
      break
    fi
    sleep 0.2
  done
  rm -f "${PIDFILE[$name]}"
}

# ---------------------------------------------------------------- install --
install_packages() {
  local missing=() p st
  for p in "${PACKAGES[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $st == installed ]] || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0

  command -v apt-get >/dev/null || die "apt-get not found (this script targets Debian 12)"
  log "installing: ${missing[*]} (apt log: /var/log/slurm-dev-apt.log)"
  local t0=$SECONDS policy=/usr/sbin/policy-rc.d made_policy=0
  # Keep the distro from starting the daemons itself (we start them by hand).
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; made_policy=1
  fi
  local rc=0
  {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q &&
    apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "${PACKAGES[@]}"
  } >/var/log/slurm-dev-apt.log 2>&1 || rc=$?
  (( made_policy )) && rm -f "$policy"
  if (( rc != 0 )); then
    tail -n 30 /var/log/slurm-dev-apt.log >&2
    die "apt-get failed (exit $rc)"
  fi
  log "packages installed in $((SECONDS - t0))s ($(dpkg-query -W -f='slurm ${Version}' slurmctld))"
}

# ----------------------------------------------------------------- config --
write_if_changed() { # path mode owner  (content on stdin)
  local path=$1 mode=$2 owner=$3 tmp
  tmp=$(mktemp "$path.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"; chown "$owner" "$tmp"
  if [[ -f $path ]] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
    chmod "$mode" "$path"; chown "$owner" "$path"
  else
    mv -f "$tmp" "$path"
    log "wrote $path"
  fi
}

conf_hash() { sha256sum "$1" | cut -d' ' -f1; }
applied_hash_ok() { # conf-file state-name
  [[ -r $STATE_DIR/$2.sha ]] && [[ $(cat "$STATE_DIR/$2.sha") == "$(conf_hash "$1")" ]]
}
record_hash() { mkdir -p "$STATE_DIR"; conf_hash "$1" >"$STATE_DIR/$2.sha"; }

write_configs() {
  install -d -m 755 "$CONF_DIR" "$LOG_DIR" "$SLURMD_SPOOL"
  install -d -m 700 "$CTLD_STATE"
  mkdir -p "$STATE_DIR"

  local mem_kb real_mem
  mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  real_mem=$(( mem_kb / 1024 * 95 / 100 ))   # a little under MemTotal, in MB

  write_if_changed "$SLURM_CONF" 644 root:root <<EOF
# Generated by scripts/dev/slurm-cluster.sh -- do not edit (rewritten on 'up').
ClusterName=$CLUSTER_NAME
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge

StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=${PIDFILE[slurmctld]}
SlurmdPidFile=${PIDFILE[slurmd]}
SlurmctldLogFile=${LOGFILE[slurmctld]}
SlurmdLogFile=${LOGFILE[slurmd]}
SlurmctldDebug=info
SlurmdDebug=info

# no cgroups in containers / CI
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none

SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# start jobs immediately instead of every few seconds
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
# Slurm's cron (scrontab), as NERSC offers it to workflow managers: the autopilot uses it
ScronParameters=enable
# small on purpose: tests must exercise splitting campaigns into several arrays
# (largest allowed array index is MaxArraySize-1)
MaxArraySize=$MAX_ARRAY_SIZE
MaxJobCount=$MAX_JOB_COUNT
MinJobAge=60
MailProg=/bin/true
ReturnToService=2
KillWait=5
OverTimeLimit=0
InactiveLimit=0

AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none

# advertise more CPUs than the machine has so short test jobs run side by side
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

  # slurmdbd refuses to start unless this is 0600 and owned by SlurmUser.
  write_if_changed "$DBD_CONF" 600 root:root <<EOF
# Generated by scripts/dev/slurm-cluster.sh -- do not edit (rewritten on 'up').
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=${PIDFILE[slurmdbd]}
LogFile=${LOGFILE[slurmdbd]}
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
}

# ---------------------------------------------------------------- daemons --
# readiness checks (wait_ready hides their output unless they keep failing)
munge_ok()   { munge -n | unmunge; }
mariadb_ok() { timeout 5 mariadb-admin ping; }
dbd_ok()     { timeout 10 sacctmgr -n list cluster; }
ctld_ok()    { local o; o=$(timeout 10 scontrol ping 2>&1) || true; echo "$o"; [[ $o == *'is UP'* ]]; }
node_state() { # normalised state of our node, e.g. idle / mixed / down / drained
  local s
  s=$(timeout 10 sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1) || true
  s=${s%%[*~#\$@!%^-]*}
  printf '%s' "$s"
}
sacct_ok() { # real accounting query through slurmdbd -> MariaDB
  local out
  out=$(timeout 20 sacct -n -X -a -S now-10minutes -o JobID 2>&1) || return 1
  ! grep -qi 'error' <<<"$out"
}

start_munged() {
  if daemon_alive munged && munge_ok >/dev/null 2>&1; then return 0; fi
  if [[ ! -s $MUNGE_KEY ]]; then
    log "creating $MUNGE_KEY"
    install -d -o munge -g munge -m 700 /etc/munge
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile="$MUNGE_KEY" --force
    else
      dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
  fi
  chown munge:munge "$MUNGE_KEY"; chmod 400 "$MUNGE_KEY"
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
  if ! daemon_alive munged; then
    rm -f /run/munge/munge.socket.2 /run/munge/munged.pid   # stale leftovers
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1 ||
      fail_daemon munged "munged failed to start"
  fi
  wait_ready munged "munge -n | unmunge" munge_ok
}

start_mariadbd() {
  if daemon_alive mariadbd && mariadb_ok >/dev/null 2>&1; then :; else
    install -d -o mysql -g mysql -m 755 /run/mysqld
    if [[ ! -d /var/lib/mysql/mysql ]]; then
      log "initialising MariaDB data directory"
      mariadb-install-db --user=mysql >>"${LOGFILE[mariadbd]}" 2>&1 ||
        fail_daemon mariadbd "mariadb-install-db failed"
    fi
    if ! daemon_alive mariadbd; then
      rm -f /run/mysqld/mysqld.sock /run/mysqld/mysqld.pid
      log "starting mariadbd"
      # Fully detached (own session, no tty/stdin): a plain 'nohup ... &' was
      # seen to die when the starting shell went away.
      setsid -f mariadbd --user=mysql --bind-address=127.0.0.1 \
        --pid-file="${PIDFILE[mariadbd]}" --socket=/run/mysqld/mysqld.sock \
        --innodb-buffer-pool-size=512M --innodb-lock-wait-timeout=900 \
        </dev/null >>"${LOGFILE[mariadbd]}" 2>&1
    fi
    wait_ready mariadbd "mariadb-admin ping" mariadb_ok
  fi
  # idempotent; also picks up a changed SLURM_DEV_DB_PASSWORD
  mariadb <<EOF || fail_daemon mariadbd "could not create the slurmdbd database user"
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
EOF
}

start_slurmdbd() {
  if daemon_alive slurmdbd && ! applied_hash_ok "$DBD_CONF" slurmdbd; then
    log "slurmdbd.conf changed: restarting slurmdbd"
    stop_daemon slurmdbd
  fi
  if daemon_alive slurmdbd && dbd_ok >/dev/null 2>&1; then return 0; fi
  if ! daemon_alive slurmdbd; then
    log "starting slurmdbd"
    setsid slurmdbd </dev/null >>"${LOGFILE[slurmdbd]}" 2>&1 ||
      fail_daemon slurmdbd "slurmdbd failed to start"
    record_hash "$DBD_CONF" slurmdbd
  fi
  wait_ready slurmdbd "sacctmgr -n list cluster" dbd_ok
}

start_slurm() {
  if { daemon_alive slurmctld || daemon_alive slurmd; } &&
     ! applied_hash_ok "$SLURM_CONF" slurm; then
    log "slurm.conf changed: restarting slurmctld and slurmd"
    stop_daemon slurmd
    stop_daemon slurmctld
  fi
  if ! daemon_alive slurmctld; then
    log "starting slurmctld"
    setsid slurmctld </dev/null >>"${LOGFILE[slurmctld]}" 2>&1 ||
      fail_daemon slurmctld "slurmctld failed to start"
  fi
  wait_ready slurmctld "scontrol ping" ctld_ok
  # give a freshly started slurmd a moment to register before resuming the node
  local next_resume=$SECONDS
  if ! daemon_alive slurmd; then
    log "starting slurmd"
    setsid slurmd </dev/null >>"${LOGFILE[slurmd]}" 2>&1 ||
      fail_daemon slurmd "slurmd failed to start"
    next_resume=$((SECONDS + 3))
  fi
  record_hash "$SLURM_CONF" slurm

  # wait for the node to become usable; resume it if an unclean stop left it
  # DOWN/DRAINED
  local deadline=$((SECONDS + TIMEOUT)) st
  while :; do
    st=$(node_state)
    [[ $st =~ ^(idle|mixed|allocated|completing)$ ]] && break
    daemon_alive slurmd || fail_daemon slurmd "slurmd exited (node state: ${st:-?})"
    if [[ $st =~ ^(down|drain|drained|draining|fail|failing)$ ]] &&
       (( SECONDS >= next_resume )); then
      log "node $NODE is $st: resuming"
      scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
      next_resume=$((SECONDS + 3))
    fi
    if (( SECONDS >= deadline )); then
      timeout 10 sinfo -N -l >&2 || true
      fail_daemon slurmd "node $NODE not idle after ${TIMEOUT}s (state: ${st:-?})"
    fi
    sleep 0.2
  done
}

# ------------------------------------------------------------- subcommands --
cmd_status() {
  local ok=0 d pids st
  for d in "${DAEMONS[@]}"; do
    pids=$(daemon_pids "$d")
    if [[ -n $pids ]]; then
      printf '  %-10s running (pid %s)\n' "$d" "$(echo $pids)"
    else
      printf '  %-10s NOT RUNNING\n' "$d"; ok=1
    fi
  done
  st=$(node_state)
  if [[ $st =~ ^(idle|mixed|allocated|completing)$ ]]; then
    printf '  %-10s %s\n' "node" "$NODE: $st"
  else
    printf '  %-10s %s  <-- not usable\n' "node" "$NODE: ${st:-unreachable}"; ok=1
  fi
  if sacct_ok; then
    printf '  %-10s ok\n' "sacct"
  else
    printf '  %-10s FAILED:\n' "sacct"
    timeout 20 sacct -n -X -a -S now-10minutes -o JobID 2>&1 | grep -i error |
      head -n 6 | sed 's/^/      /' || true
    ok=1
  fi
  if (( ok == 0 )); then
    timeout 10 sinfo 2>/dev/null | sed 's/^/  /' || true
    log "cluster '$CLUSTER_NAME' is healthy"
  else
    log "cluster is NOT healthy (logs in $LOG_DIR, /var/log/munge)"
  fi
  return $ok
}

# Debian 12's slurm-client does not ship scrontab (Slurm's cron, which the autopilot uses).
# Build it from the same Slurm version's Debian source against the installed
# libslurmfull: configure once, compile its four files, install to /usr/local/bin.
SCRONTAB=/usr/local/bin/scrontab
build_scrontab() {
  [[ -x $SCRONTAB ]] && return 0
  local version t0=$SECONDS work=/var/cache/slurm-dev-scrontab
  version=$(dpkg-query -W -f='${Version}' slurm-client)
  log "building scrontab for slurm $version (log: /var/log/slurm-dev-scrontab.log)"
  if ! (
    set -e
    cat >/etc/apt/sources.list.d/slurm-dev-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends dpkg-dev gcc libc6-dev
    rm -rf "$work" && mkdir -p "$work" && cd "$work"
    apt-get source -q "slurm-wlm=$version"
    cd slurm-wlm-*/
    ./configure --prefix=/usr --sysconfdir=/etc/slurm --libdir=/usr/lib/x86_64-linux-gnu -q
    (cd src/scrontab && ld -r -b binary -o "$work/usage.o" usage.txt &&
      ld -r -b binary -o "$work/default_crontab.o" default_crontab.txt)
    gcc -O2 -no-pie -DHAVE_CONFIG_H -I. -Islurm -o "$SCRONTAB" src/scrontab/*.c \
      "$work/usage.o" "$work/default_crontab.o" \
      -L/usr/lib/x86_64-linux-gnu/slurm-wlm -lslurmfull \
      -Wl,-rpath,/usr/lib/x86_64-linux-gnu/slurm-wlm -lpthread
  ) >/var/log/slurm-dev-scrontab.log 2>&1; then
    tail -n 30 /var/log/slurm-dev-scrontab.log >&2
    die "building scrontab failed"
  fi
  rm -rf "$work"
  log "scrontab built in $((SECONDS - t0))s"
}

cmd_up() {
  need_root up
  check_settings
  local t0=$SECONDS
  install_packages
  build_scrontab
  write_configs
  start_munged
  start_mariadbd
  start_slurmdbd
  start_slurm
  # slurmdbd may have lost its DB connection (e.g. mariadbd was restarted)
  if ! sacct_ok; then
    log "accounting not answering: restarting slurmdbd"
    stop_daemon slurmdbd
    start_slurmdbd
    local deadline=$((SECONDS + TIMEOUT))
    until sacct_ok; do
      (( SECONDS >= deadline )) && fail_daemon slurmdbd "sacct still failing after ${TIMEOUT}s"
      sleep 0.5
    done
  fi
  log "up in $((SECONDS - t0))s"
  local rc=0
  cmd_status || rc=$?
  scontrol show config | grep -i MaxArraySize || true
  return $rc
}

cancel_all_jobs() {
  ctld_ok >/dev/null 2>&1 || return 0
  local jobs
  jobs=$(timeout 10 squeue -h -o %F 2>/dev/null | sort -u || true)
  [[ -z $jobs ]] && return 0
  log "cancelling $(wc -w <<<"$jobs") job(s)"
  # shellcheck disable=SC2086
  scancel $jobs 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while [[ -n $(timeout 10 squeue -h -o %i 2>/dev/null || true) ]] && (( SECONDS < deadline )); do
    sleep 0.5
  done
}

cmd_down() {
  need_root down
  cancel_all_jobs
  stop_daemon slurmd 30
  stop_daemon slurmctld 30
  stop_daemon slurmdbd 30
  stop_daemon mariadbd 60
  stop_daemon munged 15
  rm -f "$STATE_DIR"/*.sha
  log "all daemons stopped"
}

cmd_reset() {
  need_root reset
  check_settings
  cancel_all_jobs
  stop_daemon slurmd 30
  stop_daemon slurmctld 30
  stop_daemon slurmdbd 30
  # job ids restart at 1 with a fresh StateSaveLocation: drop accounting too
  write_configs
  start_munged
  start_mariadbd
  log "dropping accounting database $DB_NAME and controller state"
  mariadb -e "DROP DATABASE IF EXISTS $DB_NAME" || die "could not drop $DB_NAME"
  rm -rf "${CTLD_STATE:?}"/* "${SLURMD_SPOOL:?}"/*
  cmd_up
}

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
}

case ${1:-} in
  up)     cmd_up ;;
  down)   cmd_down ;;
  status) cmd_status ;;
  reset)  cmd_reset ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
