#!/usr/bin/env bash
# Stop what scripts/slurm-start.sh started, by the pids it recorded under $DFG_SLURM_DIR
# (default /tmp/dfg-slurm): slurmd, slurmctld, and munged only if that script started it.
set -uo pipefail

STATE=${DFG_SLURM_DIR:-/tmp/dfg-slurm}
STOP_TIMEOUT_S=10

stop() {  # stop NAME: TERM the recorded pid, wait, KILL if it lingers
    local f="$STATE/$1.pid" pid
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq $((STOP_TIMEOUT_S * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$f"
    echo "slurm-stop: stopped $1 (pid $pid)" >&2
}

# Cancel leftover jobs first so slurmd has no job steps to wait for.
command -v scancel >/dev/null && [ -s "$STATE/slurmctld.pid" ] && scancel --full --user="$(id -un)" 2>/dev/null
stop slurmd
stop slurmctld
stop munged
exit 0
