# Shared by start.sh (one node) and start-nodes.sh (nodes in network namespaces); sourced, not run.
#
# The caller sets TAG (its log prefix) and LOG_FILES (logs whose tails `die` prints) before sourcing.
# Daemons live in /usr/sbin, which a non-login root shell may not have on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "[$TAG] $*"; }
die() {
    echo "[$TAG] ERROR: $*" >&2
    for f in "${LOG_FILES[@]}"; do
        if [ -s "$f" ]; then
            echo "--- last lines of $f ---" >&2
            tail -n 15 "$f" >&2
        fi
    done
    exit 1
}

require_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts system daemons)"
}

# slurmctld, slurmd, the client commands and munge, from Debian when missing.
install_slurm_packages() {
    local need_install=() pair created_policy=0 apt_ok=1
    for pair in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || need_install+=("${pair#*:}")
    done
    [ "${#need_install[@]}" -gt 0 ] || return 0
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ${need_install[*]} by hand"
    say "installing ${need_install[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' maintainer scripts from starting services: we start them ourselves, with our own
    # configuration (and there is no init system to start them with anyway).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        created_policy=1
    fi
    apt-get update -qq >/dev/null || apt_ok=0
    if [ "$apt_ok" -eq 1 ]; then
        apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null || apt_ok=0
    fi
    [ "$created_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$apt_ok" -eq 1 ] || die "apt-get could not install the SLURM packages"
    say "packages installed"
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# One munged for every daemon on this machine: its socket is a file, reachable from any network namespace.
start_munge() {
    local munge_user=munge
    id "$munge_user" >/dev/null 2>&1 || munge_user=root
    install -d -m 0700 -o "$munge_user" -g "$munge_user" /etc/munge /var/lib/munge /var/log/munge
    install -d -m 0755 -o "$munge_user" -g "$munge_user" /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        say "creating munge key"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
    fi
    chown "$munge_user:$munge_user" /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    if munge_works; then
        say "munged already running"
        return 0
    fi
    say "starting munged"
    # --force: a munged that died uncleanly leaves a socket lock that would block a plain start.
    rm -f /run/munge/munged.pid
    if [ "$munge_user" = root ]; then
        munged --force
    else
        runuser -u "$munge_user" -- munged --force
    fi
    for _ in $(seq 1 20); do munge_works && break; sleep 0.5; done
    munge_works || die "munged did not start (see /var/log/munge/munged.log)"
}

# Pids of the processes whose full command line matches the extended regex $1 (never fails).
pids_matching() { pgrep -f "$1" 2>/dev/null | tr '\n' ' ' || true; }

# Stop the daemons whose command line matches $1 (and the pid in file $2, if any); wait until gone.
stop_matching() {
    local pattern="$1" pid_file="${2:-}" pids
    pids="$( { [ -n "$pid_file" ] && cat "$pid_file" 2>/dev/null; pids_matching "$pattern"; } | tr ' ' '\n' \
        | sort -u | tr '\n' ' ' || true)"
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 40); do
        [ -z "$(pids_matching "$pattern")" ] && break
        sleep 0.5
    done
    for pid in $(pids_matching "$pattern"); do kill -9 "$pid" 2>/dev/null || true; done
    [ -n "$pid_file" ] && rm -f "$pid_file"
    return 0
}

# Memory a node may offer (MiB): all but ~1 GiB (at least 10 %), since slurmd drains a node that
# reports less than its configured RealMemory.
usable_memory_mb() {
    local mem_mb
    mem_mb="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
    mem_mb=$(( mem_mb - (mem_mb / 10 > 1024 ? mem_mb / 10 : 1024) ))
    [ "$mem_mb" -gt 256 ] || mem_mb=256
    echo "$mem_mb"
}

# The slurm.conf lines both test clusters share: munge, no cgroups, no accounting, short timeouts.
conf_common() {
    cat <<EOF
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
# A node that comes back (its slurmd registers again) returns to service by itself.
ReturnToService=2
# Short timeouts: tests wait for jobs to appear and to leave the queue, and for lost nodes to be DOWN.
SlurmctldTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=5
SlurmctldDebug=info
SlurmdDebug=info
EOF
}
