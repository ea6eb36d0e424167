#!/usr/bin/env bash
# Single-node Slurm cluster (with accounting) for development and CI.
#
#   scripts/dev/slurm-cluster.sh up      install (Debian 12) + start everything; idempotent
#   scripts/dev/slurm-cluster.sh down    cancel all jobs, stop all daemons (both profiles)
#   scripts/dev/slurm-cluster.sh status  health check; exit 0 only if fully healthy
#   scripts/dev/slurm-cluster.sh reset   stop Slurm, wipe controller state + accounting DB, up
#   ... --profile perlmutter             the same for a second, Perlmutter-shaped cluster
#
# Daemons are started by hand (no systemd needed), in order:
#   munged -> mariadbd -> slurmdbd -> slurmctld -> slurmd
# The perlmutter profile is a second cluster beside the default one (own ClusterName,
# /etc/slurm-perlmutter, ports, spool and state; the same munged, MariaDB and slurmdbd):
#   SLURM_CONF=/etc/slurm-perlmutter/slurm.conf sbatch ...   selects it.
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

# -- the perlmutter profile: a second cluster on the same host --------------------------
PM_CLUSTER=perlmutter
PM_CONF_DIR=/etc/slurm-perlmutter
PM_CONF=$PM_CONF_DIR/slurm.conf
PM_CPUS=${SLURM_DEV_PM_CPUS:-8}                  # CPUs advertised per node
PM_CPU_MEM=${SLURM_DEV_PM_CPU_MEMORY_MB:-8000}   # RealMemory of the cpu node (MB)
PM_GPU_MEM=${SLURM_DEV_PM_GPU_MEMORY_MB:-4000}   # RealMemory of the gpu node (MB)
PM_GPUS=4                                        # per gpu node, as on Perlmutter
PM_DEBUG_SUBMIT=${SLURM_DEV_PM_DEBUG_MAX_SUBMIT:-5}
PM_CTLD_PORT=6827                                # default cluster: 6817/6818
PM_CTLD_STATE=/var/spool/slurmctld-perlmutter
PM_SLURMD_SPOOL=/var/spool/slurmd-perlmutter
PM_NODES=(pm-cpu pm-gpu)
declare -A PM_PORT=([pm-cpu]=6828 [pm-gpu]=6829)
PIDFILE[pm-slurmctld]=/var/run/slurmctld-perlmutter.pid
LOGFILE[pm-slurmctld]=$LOG_DIR/perlmutter-slurmctld.log
for n in "${PM_NODES[@]}"; do
  PIDFILE[pm-slurmd-$n]=/var/run/slurmd-perlmutter-$n.pid
  LOGFILE[pm-slurmd-$n]=$LOG_DIR/perlmutter-slurmd-$n.log
done
PM_DAEMONS=(pm-slurmctld pm-slurmd-pm-cpu pm-slurmd-pm-gpu)
# A daemon of the profile is the program (comm) whose command line holds its own marker;
# the default cluster's slurmctld/slurmd are those without the profile's config path.
declare -A COMM=([pm-slurmctld]=slurmctld [pm-slurmd-pm-cpu]=slurmd [pm-slurmd-pm-gpu]=slurmd)
declare -A MARKER=([pm-slurmctld]="-f $PM_CONF" [pm-slurmd-pm-cpu]="-N pm-cpu"
                   [pm-slurmd-pm-gpu]="-N pm-gpu")

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
  for v in PM_CPUS PM_CPU_MEM PM_GPU_MEM PM_DEBUG_SUBMIT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v (SLURM_DEV_PM_*) must be a positive integer (got '${!v}')"
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
# Two clusters run the same programs: a process is ours if its command line holds the
# daemon's MARKER (profile daemons) or no profile's config path (default daemons).
cmdline_is() { # name pid
  local name=$1 pid=$2 args
  args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  if [[ -n ${MARKER[$name]:-} ]]; then
    [[ " $args " == *" ${MARKER[$name]} "* ]]
  else
    [[ $args != *"$PM_CONF_DIR/"* ]]
  fi
}

daemon_pids() { # name
  local name=$1 pid comm f
  local prog=${COMM[$name]:-$name}
  local -A seen=()
  if [[ -r ${PIDFILE[$name]} ]]; then
    pid= comm=
    { read -r pid <"${PIDFILE[$name]}"; } 2>/dev/null || true
    pid=${pid//[^0-9]/}
    if [[ -n $pid ]]; then { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || true; fi
    if [[ $comm == "$prog" ]] && pid_alive "$pid" && cmdline_is "$name" "$pid"; then
      seen[$pid]=1
    fi
  fi
  for f in /proc/[0-9]*/comm; do
    { read -r comm <"$f"; } 2>/dev/null || continue
    [[ $comm == "$prog" ]] || continue
    pid=${f#/proc/}; pid=${pid%/comm}
    pid_alive "$pid" && cmdline_is "$name" "$pid" && seen[$pid]=1
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

# slurm.conf lines both clusters share (scheduling, no cgroups, limits, timings)
common_settings() {
  cat <<EOF
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
EOF
}

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

$(common_settings)

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
# One line per daemon; exit 1 if any is not running.
report_daemons() { # width daemon...
  local width=$1 d pids rc=0; shift
  for d in "$@"; do
    pids=$(daemon_pids "$d")
    if [[ -n $pids ]]; then
      printf "  %-${width}s running (pid %s)\n" "$d" "$(echo $pids)"
    else
      printf "  %-${width}s NOT RUNNING\n" "$d"; rc=1
    fi
  done
  return $rc
}

cmd_status() {
  local ok=0 st
  report_daemons 10 "${DAEMONS[@]}" || ok=1
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
  # the accounting database is shared: the perlmutter cluster stops and loses its state too
  pm_cancel_all_jobs
  local d
  for d in pm-slurmd-pm-gpu pm-slurmd-pm-cpu pm-slurmctld; do stop_daemon "$d" 30; done
  rm -rf "${PM_CTLD_STATE:?}"/* "${PM_SLURMD_SPOOL:?}"/* 2>/dev/null || true
  rm -f "$STATE_DIR"/pm-*.sha
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

# ------------------------------------------------------- perlmutter profile --
# A second cluster beside the default one, shaped like NERSC Perlmutter: nodes with the
# features `cpu` and `gpu` (the gpu node with 4 GPUs as GRES), QOS regular/debug/shared with
# limits that slurmdbd enforces (AccountingStorageEnforce), accounts m0001 and m0001_g.
# Its own ClusterName, config dir, ports, spool, state and pid files; the same munged,
# MariaDB and slurmdbd. Two slurmd run on this host, one per node (`slurmd -N`).
pm() { SLURM_CONF=$PM_CONF "$@"; }   # run a Slurm client against the profile's cluster

write_pm_configs() {
  install -d -m 755 "$PM_CONF_DIR" "$LOG_DIR" "$PM_CONF_DIR/gpu-devices"
  install -d -m 700 "$PM_CTLD_STATE"
  local n
  for n in "${PM_NODES[@]}"; do install -d -m 755 "$PM_SLURMD_SPOOL/$n"; done
  # Slurm 22.05's gres/gpu drops GPUs without a File= ("Removing file-less GPU"), and the
  # node then goes INVAL ("gres/gpu count reported lower than configured (0 < 4)").
  # Stand-ins for /dev/nvidia0-3: links to /dev/null, a character device (nothing
  # opens them; there are no cgroups to constrain devices).
  for n in 0 1 2 3; do ln -sfn /dev/null "$PM_CONF_DIR/gpu-devices/nvidia$n"; done

  write_if_changed "$PM_CONF" 644 root:root <<EOF
# Generated by scripts/dev/slurm-cluster.sh --profile perlmutter -- do not edit.
# A Perlmutter-shaped test cluster: select it with SLURM_CONF=$PM_CONF.
ClusterName=$PM_CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PM_CTLD_PORT
SlurmdPort=${PM_PORT[pm-cpu]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge

StateSaveLocation=$PM_CTLD_STATE
SlurmdSpoolDir=$PM_SLURMD_SPOOL/%n
SlurmctldPidFile=${PIDFILE[pm-slurmctld]}
SlurmdPidFile=/var/run/slurmd-perlmutter-%n.pid
SlurmctldLogFile=${LOGFILE[pm-slurmctld]}
SlurmdLogFile=$LOG_DIR/perlmutter-slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info

$(common_settings)
# refuse at submission what can never run (time over the partition's limit, ...)
EnforcePartLimits=ALL

AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
# as at NERSC: an association (user+account) is required, QOS limits are enforced
AccountingStorageEnforce=associations,limits,qos
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none

GresTypes=gpu
SlurmdParameters=config_overrides
NodeName=pm-cpu NodeHostname=$NODE NodeAddr=127.0.0.1 Port=${PM_PORT[pm-cpu]} CPUs=$PM_CPUS RealMemory=$PM_CPU_MEM Feature=cpu State=UNKNOWN
NodeName=pm-gpu NodeHostname=$NODE NodeAddr=127.0.0.1 Port=${PM_PORT[pm-gpu]} CPUs=$PM_CPUS RealMemory=$PM_GPU_MEM Feature=gpu Gres=gpu:$PM_GPUS State=UNKNOWN
PartitionName=regular Nodes=pm-cpu,pm-gpu Default=YES MaxTime=2-00:00:00 State=UP
EOF

  write_if_changed "$PM_CONF_DIR/gres.conf" 644 root:root <<EOF
# Generated by scripts/dev/slurm-cluster.sh --profile perlmutter -- do not edit.
NodeName=pm-gpu Name=gpu File=$PM_CONF_DIR/gpu-devices/nvidia[0-3]
EOF
}

pm_ctld_ok() { local o; o=$(timeout 10 env SLURM_CONF="$PM_CONF" scontrol ping 2>&1) || true; echo "$o"; [[ $o == *'is UP'* ]]; }
pm_node_state() { # node
  local s
  s=$(timeout 10 env SLURM_CONF="$PM_CONF" sinfo -h -N -n "$1" -o %T 2>/dev/null | head -n1) || true
  s=${s%%[*~#\$@!%^-]*}
  printf '%s' "$s"
}
pm_sacct_ok() {
  local out
  out=$(timeout 20 env SLURM_CONF="$PM_CONF" sacct -n -X -a -S now-10minutes -o JobID 2>&1) || return 1
  ! grep -qi 'error' <<<"$out"
}
pm_registered() { timeout 10 env SLURM_CONF="$PM_CONF" sacctmgr -n -P list cluster format=cluster | grep -qx "$PM_CLUSTER"; }

start_pm_slurm() {
  local d n
  if { daemon_alive pm-slurmctld || daemon_alive pm-slurmd-pm-cpu || daemon_alive pm-slurmd-pm-gpu; } &&
     ! { applied_hash_ok "$PM_CONF" pm-slurm && applied_hash_ok "$PM_CONF_DIR/gres.conf" pm-gres; }; then
    log "$PM_CONF changed: restarting the perlmutter cluster's slurmctld and slurmd"
    for d in pm-slurmd-pm-gpu pm-slurmd-pm-cpu pm-slurmctld; do stop_daemon "$d"; done
  fi
  if ! daemon_alive pm-slurmctld; then
    log "starting slurmctld ($PM_CLUSTER)"
    setsid slurmctld -f "$PM_CONF" </dev/null >>"${LOGFILE[pm-slurmctld]}" 2>&1 ||
      fail_daemon pm-slurmctld "slurmctld ($PM_CLUSTER) failed to start"
  fi
  wait_ready pm-slurmctld "SLURM_CONF=$PM_CONF scontrol ping" pm_ctld_ok
  local next_resume=$SECONDS
  for n in "${PM_NODES[@]}"; do
    if ! daemon_alive "pm-slurmd-$n"; then
      log "starting slurmd for node $n ($PM_CLUSTER)"
      setsid slurmd -f "$PM_CONF" -N "$n" </dev/null >>"${LOGFILE[pm-slurmd-$n]}" 2>&1 ||
        fail_daemon "pm-slurmd-$n" "slurmd for $n failed to start"
      next_resume=$((SECONDS + 3))
    fi
  done
  record_hash "$PM_CONF" pm-slurm
  record_hash "$PM_CONF_DIR/gres.conf" pm-gres

  local deadline=$((SECONDS + TIMEOUT)) st
  for n in "${PM_NODES[@]}"; do
    while :; do
      st=$(pm_node_state "$n")
      [[ $st =~ ^(idle|mixed|allocated|completing)$ ]] && break
      daemon_alive "pm-slurmd-$n" || fail_daemon "pm-slurmd-$n" "slurmd of $n exited (state: ${st:-?})"
      if [[ $st =~ ^(down|drain|drained|draining|fail|failing|inval)$ ]] &&
         (( SECONDS >= next_resume )); then
        log "node $n is $st: resuming"
        pm scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true
        next_resume=$((SECONDS + 3))
      fi
      if (( SECONDS >= deadline )); then
        timeout 10 env SLURM_CONF="$PM_CONF" sinfo -N -l >&2 || true
        fail_daemon "pm-slurmd-$n" "node $n not idle after ${TIMEOUT}s (state: ${st:-?})"
      fi
      sleep 0.2
    done
  done
}

# name and limits of each QOS, as sacctmgr takes them (test-sized, Perlmutter's shape)
pm_qos_specs() {
  echo "regular MaxWall=2-00:00:00 MaxSubmitJobsPerUser=200 MaxTRESPerJob=node=2 Flags=DenyOnLimit"
  echo "debug MaxWall=00:30:00 MaxSubmitJobsPerUser=$PM_DEBUG_SUBMIT MaxJobsPerUser=2 MaxTRESPerJob=node=2 Flags=DenyOnLimit"
  echo "shared MaxWall=2-00:00:00 MaxSubmitJobsPerUser=200 MaxTRESPerJob=node=1 Flags=DenyOnLimit"
}

# QOS, accounts and root's associations; idempotent (sacctmgr -i, existing ones modified).
setup_pm_accounting() {
  local deadline=$((SECONDS + TIMEOUT)) name limits account
  until pm_registered; do  # slurmctld registers the cluster with slurmdbd when it starts
    (( SECONDS >= deadline )) && fail_daemon slurmdbd "cluster $PM_CLUSTER never registered"
    sleep 0.5
  done
  while read -r name limits; do
    if ! timeout 10 env SLURM_CONF="$PM_CONF" sacctmgr -n -P show qos "$name" format=name | grep -qx "$name"; then
      timeout 20 env SLURM_CONF="$PM_CONF" sacctmgr -i add qos "$name" >/dev/null || die "sacctmgr add qos $name failed"
    fi
    # shellcheck disable=SC2086
    timeout 20 env SLURM_CONF="$PM_CONF" sacctmgr -i modify qos where name="$name" set $limits >/dev/null || true
  done < <(pm_qos_specs)
  for account in m0001 m0001_g; do
    if ! timeout 10 env SLURM_CONF="$PM_CONF" sacctmgr -n -P show assoc cluster="$PM_CLUSTER" account="$account" \
        user=root format=account | grep -qx "$account"; then
      timeout 20 env SLURM_CONF="$PM_CONF" sacctmgr -i add account "$account" cluster="$PM_CLUSTER" \
        description="test project" organization=campaigns >/dev/null || true
      timeout 20 env SLURM_CONF="$PM_CONF" sacctmgr -i add user root account="$account" cluster="$PM_CLUSTER" \
        >/dev/null || die "sacctmgr add user root account=$account failed"
    fi
  done
  timeout 20 env SLURM_CONF="$PM_CONF" sacctmgr -i modify user where name=root cluster="$PM_CLUSTER" set \
    qos=regular,debug,shared defaultqos=regular >/dev/null || true
  timeout 20 env SLURM_CONF="$PM_CONF" sacctmgr -i modify user where name=root cluster="$PM_CLUSTER" set \
    defaultaccount=m0001 >/dev/null || true
  # slurmdbd pushes association changes to slurmctld; wait until a submission check sees them
  deadline=$((SECONDS + TIMEOUT))
  until timeout 10 env SLURM_CONF="$PM_CONF" sbatch --test-only -A m0001_g -q debug -C gpu --gpus-per-node=1 -t 1 \
      --wrap=true >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then
      timeout 10 env SLURM_CONF="$PM_CONF" sbatch --test-only -A m0001_g -q debug -C gpu --gpus-per-node=1 -t 1 \
        --wrap=true >&2 || true
      die "the perlmutter cluster does not accept a test job after ${TIMEOUT}s"
    fi
    sleep 0.5
  done
}

pm_status() {
  local ok=0 st n
  report_daemons 18 "${PM_DAEMONS[@]}" || ok=1
  for n in "${PM_NODES[@]}"; do
    st=$(pm_node_state "$n")
    if [[ $st =~ ^(idle|mixed|allocated|completing)$ ]]; then
      printf '  %-18s %s\n' "node" "$n: $st"
    else
      printf '  %-18s %s  <-- not usable\n' "node" "$n: ${st:-unreachable}"; ok=1
    fi
  done
  if pm_sacct_ok; then printf '  %-18s ok\n' "sacct"; else printf '  %-18s FAILED\n' "sacct"; ok=1; fi
  if timeout 10 env SLURM_CONF="$PM_CONF" sacctmgr -n -P show qos debug format=maxsubmitjobsperuser | grep -qx "$PM_DEBUG_SUBMIT"; then
    printf '  %-18s ok (debug: MaxSubmitJobsPerUser=%s)\n' "qos" "$PM_DEBUG_SUBMIT"
  else
    printf '  %-18s MISSING or changed (run up --profile perlmutter)\n' "qos"; ok=1
  fi
  if (( ok == 0 )); then
    timeout 10 env SLURM_CONF="$PM_CONF" sinfo -N -o '%N %T %f %G %c %m' 2>/dev/null | sed 's/^/  /' || true
    log "cluster '$PM_CLUSTER' is healthy (SLURM_CONF=$PM_CONF)"
  else
    log "cluster '$PM_CLUSTER' is NOT healthy (logs: $LOG_DIR/perlmutter-*.log)"
  fi
  return $ok
}

pm_up() {
  need_root up
  check_settings
  local t0=$SECONDS
  install_packages
  write_configs        # the shared slurmdbd.conf (and the default cluster's slurm.conf)
  write_pm_configs
  start_munged
  start_mariadbd
  start_slurmdbd
  start_pm_slurm
  setup_pm_accounting
  log "up in $((SECONDS - t0))s ($PM_CLUSTER)"
  pm_status
}

pm_cancel_all_jobs() {
  pm_ctld_ok >/dev/null 2>&1 || return 0
  local jobs
  jobs=$(timeout 10 env SLURM_CONF="$PM_CONF" squeue -h -o %F 2>/dev/null | sort -u || true)
  [[ -z $jobs ]] && return 0
  log "cancelling $(wc -w <<<"$jobs") job(s) on $PM_CLUSTER"
  # shellcheck disable=SC2086
  pm scancel $jobs 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while [[ -n $(timeout 10 env SLURM_CONF="$PM_CONF" squeue -h -o %i 2>/dev/null || true) ]] && (( SECONDS < deadline )); do
    sleep 0.5
  done
}

pm_down() {
  need_root down
  pm_cancel_all_jobs
  local d
  for d in pm-slurmd-pm-gpu pm-slurmd-pm-cpu pm-slurmctld; do stop_daemon "$d" 30; done
  rm -f "$STATE_DIR"/pm-*.sha
  log "$PM_CLUSTER's slurmctld and slurmd stopped (munged, MariaDB, slurmdbd left running)"
}

pm_reset() {
  need_root reset
  check_settings
  pm_cancel_all_jobs
  local d
  for d in pm-slurmd-pm-gpu pm-slurmd-pm-cpu pm-slurmctld; do stop_daemon "$d" 30; done
  log "wiping $PM_CLUSTER's controller state and its accounting"
  rm -rf "${PM_CTLD_STATE:?}"/* "${PM_SLURMD_SPOOL:?}"/*
  # Job ids restart at 1 with a fresh StateSaveLocation: drop the cluster's own tables
  # (<cluster>_job_table, ...) and its registration, with slurmdbd stopped so it forgets
  # them too. QOS and accounts are global and stay; the default cluster is untouched.
  start_munged
  start_mariadbd
  stop_daemon slurmdbd 30
  local table
  while read -r table; do
    [[ -n $table ]] && mariadb -e "DROP TABLE \`$DB_NAME\`.\`$table\`"
  done < <(mariadb -N -e "SELECT table_name FROM information_schema.tables WHERE
      table_schema='$DB_NAME' AND table_name LIKE '${PM_CLUSTER}\\_%'")
  mariadb -e "DELETE FROM \`$DB_NAME\`.cluster_table WHERE name='$PM_CLUSTER'" 2>/dev/null || true
  pm_up
}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

PROFILE=default
COMMAND=${1:-}
shift || true
while (( $# )); do
  case $1 in
    --profile) PROFILE=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
    --profile=*) PROFILE=${1#--profile=}; shift ;;
    *) usage >&2; exit 2 ;;
  esac
done
case $PROFILE in
  default|perlmutter) ;;
  *) die "unknown profile '$PROFILE' (default, perlmutter)" ;;
esac

case $COMMAND:$PROFILE in
  up:default)        cmd_up ;;
  up:perlmutter)     pm_up ;;
  down:default)      pm_down; cmd_down ;;   # the shared daemons go: both clusters stop
  down:perlmutter)   pm_down ;;
  status:default)    cmd_status ;;
  status:perlmutter) pm_status ;;
  reset:default)     cmd_reset ;;
  reset:perlmutter)  pm_reset ;;
  help:*|-h:*|--help:*) usage ;;
  *) usage >&2; exit 2 ;;
esac
