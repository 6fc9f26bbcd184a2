#!/usr/bin/env bash
# A throwaway single-node SLURM cluster on this machine, for the tests in tests/slurm/ (and CI). Run as root.
#
#   tests/slurm/cluster.sh install   # apt-get install slurm-wlm, slurmdbd, munge, mariadb-server (idempotent)
#   tests/slurm/cluster.sh start     # install, fresh munge key + slurm.conf, start daemons, wait for `idle`
#   tests/slurm/cluster.sh status    # daemons alive? sinfo
#   tests/slurm/cluster.sh stop      # stop what start started (by PID file), remove its config and scratch
#
# Layout: one node `localhost` (CPUs/RealMemory from `slurmd -C`), partitions `cpu` (default) and `gpu`, two
# fake GPUs (gres type `fake`, File=/dev/null and /dev/zero), accounting through slurmdbd + MariaDB so that
# `sacct` (the executor plugin's default status command) works and shows each job's requested resources;
# account `ci` for root.
# Everything lives in $SCSDPO_SLURM_SCRATCH (default /tmp/scsdpo-slurm) except /etc/slurm/{slurm,gres,slurmdbd}.conf:
# the slurm client commands only read /etc/slurm (the plugin strips SLURM_CONF from a job's environment).
# Ports: slurmctld 6817, slurmd 6818, slurmdbd 6819, MariaDB $SCSDPO_SLURM_DB_PORT (default 3316), all on 127.0.0.1.
set -euo pipefail

SCRATCH=${SCSDPO_SLURM_SCRATCH:-/tmp/scsdpo-slurm}
DB_PORT=${SCSDPO_SLURM_DB_PORT:-3316}
WAIT_S=${SCSDPO_SLURM_WAIT_S:-60}
MUNGE_SOCKET=/run/munge/munge.socket.2
MARKER="# written by scsdpo tests/slurm/cluster.sh"
CONF_FILES=(/etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/slurmdbd.conf)
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
BINARIES=(slurmctld slurmd slurmdbd sacct sacctmgr munged mungekey mariadbd mariadb-install-db)

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }

show_logs() {
  for f in "$SCRATCH"/log/*; do
    [ -f "$f" ] || continue
    echo "----- $f (last 30 lines)" >&2
    tail -n 30 "$f" >&2
  done
}

# Poll `$1` (a shell command) every 0.25 s until it succeeds; after WAIT_S seconds print the logs and fail.
wait_for() {
  local what=$1 cmd=$2 deadline=$((SECONDS + WAIT_S))
  until eval "$cmd" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      show_logs
      die "timed out after ${WAIT_S}s waiting for $what (daemon logs above, scratch $SCRATCH)"
    fi
    sleep 0.25
  done
}

have_binaries() {
  local b
  for b in "${BINARIES[@]}"; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || return 1
  done
}

install_packages() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  if have_binaries; then return 0; fi
  command -v apt-get >/dev/null || die "slurm is not installed and apt-get is not available"
  log "installing ${PACKAGES[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  # the packages' postinst must not start munged/mariadbd/slurm*: this script starts its own, on its own key
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null || {
    [ "$own_policy" = 0 ] || rm -f "$policy"
    die "apt-get install ${PACKAGES[*]} failed"
  }
  [ "$own_policy" = 0 ] || rm -f "$policy"
  have_binaries || die "apt-get finished but some of ${BINARIES[*]} are missing"
}

pid_alive() { [ -s "$SCRATCH/run/$1.pid" ] && kill -0 "$(cat "$SCRATCH/run/$1.pid")" 2>/dev/null; }

# Refuse to overwrite a slurm configuration this script did not write (a real cluster's, say).
check_foreign_config() {
  local f
  for f in "${CONF_FILES[@]}"; do
    if [ -e "$f" ] && ! grep -qF "$MARKER" "$f"; then
      die "$f exists and was not written by this script; refusing to replace it"
    fi
  done
}

write_slurm_conf() {
  # the node as slurmd sees it (sockets/cores/threads), with a little memory left for the OS and daemons
  local hw real_mem node_hw
  hw=$(slurmd -C | head -n 1)
  real_mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  node_hw=$(sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//' <<<"$hw")
  real_mem=$((real_mem - 1024))
  mkdir -p /etc/slurm
  cat >/etc/slurm/slurm.conf <<CONF
$MARKER
ClusterName=scsdpo-ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# no cgroups in a container: track processes by parent pid, do not confine tasks
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu,gres/gpu:fake
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
# CPUs, not cores, are the unit: a 1-thread job takes 1 CPU even on a hyperthreaded node
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
SlurmctldPidFile=$SCRATCH/run/slurmctld.pid
SlurmdPidFile=$SCRATCH/run/slurmd.pid
StateSaveLocation=$SCRATCH/state
SlurmdSpoolDir=$SCRATCH/spool
SlurmctldLogFile=$SCRATCH/log/slurmctld.log
SlurmdLogFile=$SCRATCH/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 $node_hw RealMemory=$real_mem Gres=gpu:fake:2 State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost Default=NO MaxTime=INFINITE State=UP
CONF
  # a GPU without a device file is dropped by slurmd; /dev/null and /dev/zero stand in for /dev/nvidia[01]
  cat >/etc/slurm/gres.conf <<CONF
$MARKER
AutoDetect=off
NodeName=localhost Name=gpu Type=fake File=/dev/null
NodeName=localhost Name=gpu Type=fake File=/dev/zero
CONF
  cat >/etc/slurm/slurmdbd.conf <<CONF
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm-ci
StorageLoc=slurm_acct_db
LogFile=$SCRATCH/log/slurmdbd.log
PidFile=$SCRATCH/run/slurmdbd.pid
DebugLevel=info
CONF
  chmod 600 /etc/slurm/slurmdbd.conf
}

start_munge() {
  # munged listens on its default socket: sacctmgr does not honour AuthInfo=socket=... when talking to slurmdbd
  if [ -S "$MUNGE_SOCKET" ] && munge -n </dev/null >/dev/null 2>&1; then
    die "a munged that this script did not start already serves $MUNGE_SOCKET; stop it first"
  fi
  install -d -o munge -g munge -m 0755 "$(dirname "$MUNGE_SOCKET")"
  install -d -o munge -g munge -m 0700 "$SCRATCH/munge"
  mungekey --create --force --keyfile="$SCRATCH/munge/munge.key"  # a fresh key for every cluster
  chown munge:munge "$SCRATCH/munge/munge.key"
  chmod 400 "$SCRATCH/munge/munge.key"
  # munged refuses to run as root
  runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$SCRATCH/munge/munge.key" \
    --pid-file="$SCRATCH/munge/munged.pid" --seed-file="$SCRATCH/munge/munged.seed" \
    --log-file="$SCRATCH/munge/munged.log"
  wait_for "munged" "[ -s '$SCRATCH/munge/munged.pid' ] && munge -n </dev/null"
  cp "$SCRATCH/munge/munged.pid" "$SCRATCH/run/munged.pid"
}

start_mariadb() {
  local db=$SCRATCH/mysql sock=$SCRATCH/mysql/mysqld.sock
  mkdir -p "$db"
  mariadb-install-db --user=root --datadir="$db/data" --auth-root-authentication-method=socket \
    --skip-test-db >"$SCRATCH/log/mariadb-install.log" 2>&1 || { show_logs; die "mariadb-install-db failed"; }
  # mariadbd stays in the foreground: detach it and keep its streams away from our caller's pipes
  setsid /usr/sbin/mariadbd --user=root --datadir="$db/data" --socket="$sock" --pid-file="$SCRATCH/run/mariadbd.pid" \
    --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=64M \
    --log-error="$SCRATCH/log/mariadb.log" </dev/null >/dev/null 2>&1 &
  wait_for "mariadbd" "mariadb-admin --socket='$sock' ping"
  mariadb --socket="$sock" -e "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm-ci';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurm() {
  /usr/sbin/slurmdbd
  wait_for "slurmdbd" "sacctmgr -n list cluster"
  sacctmgr -i add cluster scsdpo-ci >/dev/null
  sacctmgr -i add account ci Description=ci Organization=ci >/dev/null
  sacctmgr -i add user root Account=ci DefaultAccount=ci >/dev/null
  /usr/sbin/slurmctld -i
  /usr/sbin/slurmd -N localhost
  wait_for "the node to be idle" "[ \"\$(sinfo -h -N -p cpu -o '%T')\" = idle ]"
  # the controller registers with slurmdbd shortly after start; sacct answers only after that
  wait_for "slurmctld to register with slurmdbd" "sacctmgr -n -P list cluster format=ControlHost | grep -q ."
}

cmd_start() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  install_packages
  check_foreign_config
  cmd_stop >/dev/null 2>&1 || true  # leftovers of an earlier, interrupted run (ours only: PID files)
  mkdir -p "$SCRATCH"/{state,spool,log,run}
  chmod 0755 "$SCRATCH"
  write_slurm_conf
  start_munge
  start_mariadb
  start_slurm
  sinfo -N -o '%N %P %T %C %m %G'
}

# SIGTERM to every daemon named, then wait for all of them (SIGKILL after 10 s); by PID file only.
stop_daemons() {
  local name pid pids=() deadline=$((SECONDS + 10))
  for name in "$@"; do
    [ -s "$SCRATCH/run/$name.pid" ] || continue
    pid=$(cat "$SCRATCH/run/$name.pid")
    kill "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$SCRATCH/run/$name.pid"
  done
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}

cmd_stop() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  local f
  stop_daemons slurmd slurmctld slurmdbd
  stop_daemons mariadbd munged  # after the slurm daemons, which talk to both until they exit
  for f in "${CONF_FILES[@]}"; do
    if [ -e "$f" ] && grep -qF "$MARKER" "$f"; then rm -f "$f"; fi
  done
  if [ -z "${SCSDPO_SLURM_KEEP_SCRATCH:-}" ]; then rm -rf "$SCRATCH"; fi
}

cmd_status() {
  local name rc=0
  for name in munged mariadbd slurmdbd slurmctld slurmd; do
    if pid_alive "$name"; then
      echo "$name: running ($(cat "$SCRATCH/run/$name.pid"))"
    else
      echo "$name: stopped"
      rc=1
    fi
  done
  sinfo -N -o '%N %P %T %C %m %G' 2>/dev/null || true
  return "$rc"
}

case "${1:-}" in
  install) install_packages ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
