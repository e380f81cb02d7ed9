#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, for testing the workflow's cluster path for real
# (tests/test_slurm.py) or trying `snakemake --workflow-profile profiles/slurm` without a cluster.
# Needs root. Installs Debian's slurm-wlm and munge when missing, writes /etc/slurm/slurm.conf from
# nproc and MemTotal, then starts munged (unless one already answers), slurmctld and slurmd.
# Everything it starts is recorded by pid under $DFG_SLURM_DIR (default /tmp/dfg-slurm);
# scripts/slurm-stop.sh stops exactly those processes.
set -euo pipefail

STATE=${DFG_SLURM_DIR:-/tmp/dfg-slurm}
CONF=${DFG_SLURM_CONF:-/etc/slurm/slurm.conf}
MARK="# written by dfg scripts/slurm-start.sh"
READY_TIMEOUT_S=${DFG_SLURM_READY_TIMEOUT_S:-30}

die() { echo "slurm-start: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (it installs packages and starts daemons)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "slurm-wlm/munge missing and no apt-get to install them"
    echo "slurm-start: installing slurm-wlm munge" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; } \
        || die "apt-get install slurm-wlm munge failed"
fi

mkdir -p "$STATE"/state "$STATE"/spool "$STATE"/log "$(dirname "$CONF")"
HOST=$(hostname -s)
CPUS=$(nproc)
# RealMemory a bit under MemTotal (slurmd drains a node that reports less than configured).
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)

if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; not touching a real cluster's configuration"
fi
cat > "$CONF" <<CONF
$MARK
ClusterName=dfg-local
SlurmctldHost=$HOST
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
# squeue answers for finished jobs this long (s); the SLURM executor plugin needs >= 3x its first status delay
MinJobAge=300
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

# munge: reuse a running daemon, else start one and remember its pid.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge && chown munge:munge /run/munge
    [ -s /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || \
        { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }; \
        chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$STATE/munged.pid"
    munge -n | unmunge >/dev/null || die "munged does not answer (munge -n | unmunge)"
fi

for d in slurmctld slurmd; do
    if [ -s "$STATE/$d.pid" ] && kill -0 "$(cat "$STATE/$d.pid")" 2>/dev/null; then
        echo "slurm-start: $d already running (pid $(cat "$STATE/$d.pid"))" >&2
        continue
    fi
    /usr/sbin/$d || die "$d did not start; see $STATE/log/$d.log"
    for _ in $(seq 50); do [ -s "$STATE/$d.pid" ] && break; sleep 0.1; done
done

# Ready = the node is idle (or mixed/allocated by a job already).
for _ in $(seq $((READY_TIMEOUT_S * 2))); do
    st=$(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -1 || true)
    case "$st" in
        idle*|mix*|alloc*) echo "slurm-start: node $HOST $st ($CPUS CPUs, $MEM_MB MB); state in $STATE" >&2; exit 0 ;;
        down*|drain*|unk*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
die "node $HOST not idle after ${READY_TIMEOUT_S}s (sinfo: ${st:-no answer}); see $STATE/log/"
