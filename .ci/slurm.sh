#!/usr/bin/env bash
# A one-node SLURM cluster on localhost for the tests: 2 CPUs, 2 fake GPUs (character devices as gres files).
# Usage: .ci/slurm.sh install | start DIR | stop DIR      (start prints the SLURM_CONF to export)
# No accounting daemon: petsweep never reads SLURM accounting (status comes from the runs' files).
set -euo pipefail
cmd=${1:?install|start|stop}

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

start() {
  local D=$1 H
  H=$(hostname -s)
  mkdir -p "$D"/{state,spool,log}
  for i in 0 1; do [ -e "$D/fakegpu$i" ] || mknod -m 666 "$D/fakegpu$i" c 1 3; done
  cat > "$D/slurm.conf" <<CONF
ClusterName=petsweepci
SlurmctldHost=${H}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire is also how long a requeued job waits before it may start again (120 s by default)
AuthInfo=cred_expire=5
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SchedulerType=sched/backfill
# a requeued job starts once a scheduling pass sees its begin time (cred_expire) passed: the backfill pass
# (bf_interval) skips when no job or node changed, so the main loop's periodic pass (sched_interval, 60 s
# by default) runs every second too. Requeue to start again: ~6 s (14-24 s before)
SchedulerParameters=bf_interval=1,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
MaxArraySize=4
GresTypes=gpu
NodeName=${H} NodeAddr=127.0.0.1 CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=20000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  echo "NodeName=${H} Name=gpu File=$D/fakegpu[0-1]" > "$D/gres.conf"
  export SLURM_CONF=$D/slurm.conf
  mkdir -p /run/munge && chown munge:munge /run/munge
  # ask munged itself: a pid file can outlive it (a killed session), its PID a zombie's or another process's
  if ! timeout 10 munge -n </dev/null >/dev/null 2>&1; then
    runuser -u munge -- munged --force  # --force: past the socket a killed munged left behind
    cp /run/munge/munged.pid "$D/munge.owned"  # stop only the munged this script started: others may share it
  fi
  # a fresh cluster: jobs and node states saved by daemons that were killed would keep the node busy or down
  stop_pid "$D/slurmd.pid" "$D"; stop_pid "$D/slurmctld.pid" "$D"
  rm -rf "$D/state" "$D/spool" && mkdir -p "$D/state" "$D/spool"
  slurmctld
  slurmd
  local deadline=$((SECONDS + 30))
  until timeout 5 sinfo -h -o %t 2>/dev/null | grep -q idle; do
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$D/log/"*.log; exit 1; }
    sleep 0.25
  done
  echo "SLURM_CONF=$D/slurm.conf"
}

stop_pid() {  # FILE [DIR]: read the PID before killing: the daemons delete their pid files on exit
  [ -f "$1" ] || return 0
  local p; p=$(cat "$1")
  # a pid file a killed daemon left may name a process that reused its PID: kill only the daemon it names,
  # and (DIR given) only one of this cluster's, started with its SLURM_CONF
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$(basename "$1" .pid)" ] || return 0
  if [ -n "${2:-}" ]; then tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$2/slurm.conf" || return 0; fi
  kill "$p" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
}

stop() {
  local D=$1
  stop_pid "$D/slurmd.pid" "$D"; stop_pid "$D/slurmctld.pid" "$D"
  # the munged this script started (by its PID: a killed session's file may name one another started since)
  if cmp -s "$D/munge.owned" /run/munge/munged.pid; then stop_pid /run/munge/munged.pid; fi
  rm -f "$D/munge.owned"
}

case $cmd in
  install) install ;;
  start) start "${2:?scratch dir}" ;;
  stop) stop "${2:?scratch dir}" ;;
esac
