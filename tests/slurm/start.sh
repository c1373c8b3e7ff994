#!/usr/bin/env bash
# Start a real single-node SLURM (slurmctld + slurmd + munged) on this machine, for the SLURM tests.
#
# Idempotent: packages are installed only when missing, the munge key is created only when absent, and
# daemons that already answer are left alone (the script then only checks that a job step runs).
# Needs root and a Debian-like system with apt-get. Systemd is not assumed: daemons are started directly.
#
# Environment (all optional):
#   SLURM_START_TIMEOUT  seconds to wait for the node to become usable (default 60)
#   SLURM_PARTITION      partition name (default debug)
set -euo pipefail
TAG=slurm-start
TIMEOUT="${SLURM_START_TIMEOUT:-60}"
PARTITION="${SLURM_PARTITION:-debug}"
NODE=localhost
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
LOG_FILES=("$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log")
# This cluster's daemons by their command lines: the multi-node cluster's (start-nodes.sh) run beside them.
CTLD_PATTERN='^slurmctld( -c)?$'
SLURMD_PATTERN="^slurmd -N $NODE\$"
# shellcheck source=tests/slurm/common.sh
source "$(dirname "$0")/common.sh"

require_root
install_slurm_packages
start_munge

# ---------------------------------------------------------------- slurm
ctld_up() { scontrol ping 2>/dev/null | grep -q "is UP"; }
# Never fails (set -e): an unreachable controller reads as an empty state.
node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n 1 || true; }

write_conf() {
    local cpus mem_mb
    cpus="$(nproc)"
    mem_mb="$(usable_memory_mb)"
    install -d -m 0755 "$CONF_DIR"
    {
        echo "# Single-node test cluster written by tests/slurm/start.sh; rewritten whenever the daemons are (re)started."
        echo "ClusterName=deepcrdask"
        echo "SlurmctldHost=$NODE"
        conf_common
        cat <<EOF
SlurmdTimeout=30
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    } >"$CONF"
    say "wrote $CONF (CPUs=$cpus, RealMemory=${mem_mb}M, partition $PARTITION)"
}

if ctld_up && [ -n "$(node_state)" ]; then
    say "slurmctld already running"
else
    install -d -m 0755 "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"
    write_conf
    # No answering controller: stop daemons left by an earlier run (slurmd too, so that it registers
    # afresh with the new controller), and wait until they have really exited.
    stop_matching "$SLURMD_PATTERN" /run/slurmd.pid
    stop_matching "$CTLD_PATTERN" /run/slurmctld.pid
    say "starting slurmctld"
    # -c: start from a clean state (no jobs or node states left from a previous machine image).
    slurmctld -c || die "slurmctld failed to start"
fi

start_slurmd() {
    say "starting slurmd"
    install -d -m 0755 "$LOG_DIR" "$SLURMD_SPOOL"
    # -N: this node is called "$NODE" in slurm.conf whatever the machine's hostname is.
    slurmd -N "$NODE" || die "slurmd failed to start"
}
if [ -n "$(pids_matching "$SLURMD_PATTERN")" ]; then
    say "slurmd already running"
else
    start_slurmd
fi

# ---------------------------------------------------------------- wait until usable
say "waiting up to ${TIMEOUT}s for node $NODE to run a job step"
deadline=$(( SECONDS + TIMEOUT ))
state=""
out=""
ok=0
while [ "$SECONDS" -lt "$deadline" ]; do
    # A slurmd that was shutting down when we looked (or crashed since): start it again.
    [ -n "$(pids_matching "$SLURMD_PATTERN")" ] || start_slurmd
    state="$(node_state)"
    case "$state" in
        idle|mixed|allocated|completing)
            if out="$(timeout 30 srun -N1 -n1 --mem=100M -t 1 hostname 2>/dev/null)" && [ -n "$out" ]; then
                ok=1
                break
            fi ;;
        down*|drain*|drained*)
            # A node registered before the controller knew it, or left down by a previous run.
            scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
if [ "$ok" -ne 1 ]; then
    reason="$(sinfo -h -N -n "$NODE" -o '%E' 2>/dev/null || true)"
    err="$(timeout 20 srun -N1 -n1 --mem=100M -t 1 hostname 2>&1 || true)"
    die "node $NODE not usable after ${TIMEOUT}s (state '${state:-unknown}', reason '${reason:-none}'; srun: ${err:-no output})"
fi
say "ready: node $NODE ${state}, test job ran on '$out'"
sinfo
