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
# Daemons live in /usr/sbin, which a non-login root shell may not have on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

TIMEOUT="${SLURM_START_TIMEOUT:-60}"
PARTITION="${SLURM_PARTITION:-debug}"
NODE=localhost
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd

say() { echo "[slurm-start] $*"; }
die() {
    echo "[slurm-start] ERROR: $*" >&2
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"; do
        if [ -s "$f" ]; then
            echo "--- last lines of $f ---" >&2
            tail -n 15 "$f" >&2
        fi
    done
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts system daemons)"

# ---------------------------------------------------------------- packages
need_install=()
for pair in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need_install+=("${pair#*:}")
done
if [ "${#need_install[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ${need_install[*]} by hand"
    say "installing ${need_install[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' maintainer scripts from starting services: we start them ourselves below,
    # with our own configuration (and there is no init system to start them with anyway).
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        created_policy=1
    fi
    apt_ok=1
    apt-get update -qq >/dev/null || apt_ok=0
    if [ "$apt_ok" -eq 1 ]; then
        apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null || apt_ok=0
    fi
    [ "$created_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$apt_ok" -eq 1 ] || die "apt-get could not install the SLURM packages"
    say "packages installed"
fi

# ---------------------------------------------------------------- munge
MUNGE_USER=munge
id "$MUNGE_USER" >/dev/null 2>&1 || MUNGE_USER=root
install -d -m 0700 -o "$MUNGE_USER" -g "$MUNGE_USER" /etc/munge /var/lib/munge /var/log/munge
install -d -m 0755 -o "$MUNGE_USER" -g "$MUNGE_USER" /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating munge key"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
fi
chown "$MUNGE_USER:$MUNGE_USER" /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if munge_works; then
    say "munged already running"
else
    say "starting munged"
    # --force: a munged that died uncleanly leaves a socket lock that would block a plain start.
    rm -f /run/munge/munged.pid
    if [ "$MUNGE_USER" = root ]; then
        munged --force
    else
        runuser -u "$MUNGE_USER" -- munged --force
    fi
    for _ in $(seq 1 20); do munge_works && break; sleep 0.5; done
    munge_works || die "munged did not start (see /var/log/munge/munged.log)"
fi

# ---------------------------------------------------------------- slurm
ctld_up() { scontrol ping 2>/dev/null | grep -q "is UP"; }
# Never fails (set -e): an unreachable controller reads as an empty state.
node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n 1 || true; }

write_conf() {
    local cpus mem_mb
    cpus="$(nproc)"
    # Leave ~1 GiB (at least 10 %) for the system: slurmd drains a node that reports less than configured.
    mem_mb="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
    mem_mb=$(( mem_mb - (mem_mb / 10 > 1024 ? mem_mb / 10 : 1024) ))
    [ "$mem_mb" -gt 256 ] || mem_mb=256
    install -d -m 0755 "$CONF_DIR"
    cat >"$CONF" <<EOF
# Single-node test cluster written by tests/slurm/start.sh; rewritten whenever the daemons are (re)started.
ClusterName=deepcrdask
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# No cgroups in a container: plain process tracking, no task containment.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# No accounting database.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
ReturnToService=2
# Short timeouts: tests wait for jobs to appear and to leave the queue.
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=5
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    say "wrote $CONF (CPUs=$cpus, RealMemory=${mem_mb}M, partition $PARTITION)"
}

stop_daemon() {
    local name="$1" pids
    pids="$( { cat "/run/$name.pid" 2>/dev/null; pgrep -x "$name"; } | sort -u | tr '\n' ' ' || true)"
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 40); do
        pgrep -x "$name" >/dev/null 2>&1 || break
        sleep 0.5
    done
    if pgrep -x "$name" >/dev/null 2>&1; then
        for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
        sleep 1
    fi
    rm -f "/run/$name.pid"
}

if ctld_up && [ -n "$(node_state)" ]; then
    say "slurmctld already running"
else
    install -d -m 0755 "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"
    write_conf
    # No answering controller: stop daemons left by an earlier run (slurmd too, so that it registers
    # afresh with the new controller), and wait until they have really exited.
    stop_daemon slurmd
    stop_daemon slurmctld
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
if pgrep -x slurmd >/dev/null 2>&1; then
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
    pgrep -x slurmd >/dev/null 2>&1 || start_slurmd
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
