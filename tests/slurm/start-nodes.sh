#!/usr/bin/env bash
# Start a real multi-node SLURM on this machine, for the multi-node tests: each compute node is a network
# namespace with its own address on a private bridge and its own slurmd; one slurmctld (on the bridge's
# address, in this namespace, where the driver runs) and the machine's munged serve them all.
#
#   this namespace:  bridge dcr0 10.77.0.1/24, slurmctld on port 6917, the driver and its Dask scheduler
#   netns dcr-node1: dcr0 10.77.0.11/24 (veth into the bridge), slurmd -N node1, the jobs it runs
#   netns dcr-node2: dcr0 10.77.0.12/24, slurmd -N node2, ...
#
# The interface is called dcr0 on every host, as ib0 is on a real cluster, so one `interface: dcr0` serves
# scheduler and workers. Nothing leaves the machine: the bridge has no uplink. The cluster is separate from
# start.sh's single node (own configuration, port, spool and state), so both run side by side; its client
# commands need SLURM_CONF=/etc/slurm-nodes/slurm.conf. /etc/slurm-nodes/cluster.json describes it for tests.
#
# Idempotent: run it again to bring back a node a test took down (namespace, link, slurmd, state).
# Needs root, iproute2 and network namespaces; exits 1 with the reason where they cannot be made.
#
# Environment (all optional):
#   SLURM_NODES          number of compute nodes (default 2)
#   SLURM_START_TIMEOUT  seconds to wait for the nodes to run a job step (default 60)
set -euo pipefail
TAG=slurm-nodes
NODES="${SLURM_NODES:-2}"
TIMEOUT="${SLURM_START_TIMEOUT:-60}"
PARTITION=nodes
IFACE=dcr0
NET=10.77.0
CONF_DIR=/etc/slurm-nodes
CONF="$CONF_DIR/slurm.conf"
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld-nodes
SLURMD_SPOOL=/var/spool/slurmd-nodes
CTLD_PORT=6917
LOG_FILES=("$LOG_DIR/nodes-slurmctld.log" "$LOG_DIR/nodes-slurmd-node1.log")
CTLD_PATTERN="^slurmctld -f $CONF"
# shellcheck source=tests/slurm/common.sh
source "$(dirname "$0")/common.sh"
export SLURM_CONF="$CONF"

require_root
command -v ip >/dev/null 2>&1 || die "ip (iproute2) not found: network namespaces cannot be made here"
install_slurm_packages
start_munge

node_names=()
for i in $(seq 1 "$NODES"); do node_names+=("node$i"); done

# ---------------------------------------------------------------- network
if ! ip link show "$IFACE" >/dev/null 2>&1; then
    ip link add "$IFACE" type bridge || die "cannot create a bridge: network namespaces cannot be made here"
    ip addr add "$NET.1/24" dev "$IFACE"
fi
ip link set "$IFACE" up
for i in $(seq 1 "$NODES"); do
    ns="dcr-node$i"
    if ! ip netns list | grep -qw "$ns"; then
        ip netns add "$ns" || die "cannot create network namespace $ns (needs CAP_SYS_ADMIN)"
    fi
    if ! ip -n "$ns" link show "$IFACE" >/dev/null 2>&1; then
        ip link del "dcrv$i" >/dev/null 2>&1 || true
        ip link add "dcrv$i" type veth peer name "$IFACE" netns "$ns" || die "cannot create a veth pair for $ns"
        ip -n "$ns" addr add "$NET.1$i/24" dev "$IFACE"
    fi
    ip link set "dcrv$i" master "$IFACE" up
    ip -n "$ns" link set lo up
    # A test that lost this node took its link down: bring it back.
    ip -n "$ns" link set "$IFACE" up
done

# ---------------------------------------------------------------- configuration
write_conf() {
    local cpus mem_mb i
    cpus="$(nproc)"
    # The nodes share this machine's memory: each offers its share, so the cluster never promises more.
    mem_mb=$(( $(usable_memory_mb) / NODES ))
    install -d -m 0755 "$CONF_DIR"
    {
        echo "# Multi-node test cluster written by tests/slurm/start-nodes.sh; nodes are network namespaces."
        echo "ClusterName=deepcrnodes"
        conf_common
        cat <<EOF
SlurmctldHost=localhost($NET.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=6818
# A node that stops answering is DOWN after 20 s and its jobs end as NODE_FAIL.
SlurmdTimeout=20
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL/%n
SlurmctldPidFile=/run/slurmctld-nodes.pid
SlurmdPidFile=/run/slurmd-nodes-%n.pid
SlurmctldLogFile=$LOG_DIR/nodes-slurmctld.log
SlurmdLogFile=$LOG_DIR/nodes-slurmd-%n.log
EOF
        for i in $(seq 1 "$NODES"); do
            echo "NodeName=node$i NodeAddr=$NET.1$i CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN"
        done
        echo "PartitionName=$PARTITION Nodes=node[1-$NODES] Default=YES MaxTime=INFINITE State=UP"
    } >"$CONF"
    say "wrote $CONF ($NODES nodes, CPUs=$cpus and RealMemory=${mem_mb}M each, partition $PARTITION)"
}

ctld_up() { scontrol ping 2>/dev/null | grep -q "is UP"; }
node_state() { sinfo -h -N -n "$1" -o '%T' 2>/dev/null | head -n 1 || true; }
slurmd_pattern() { echo "^slurmd -f $CONF -N $1\$"; }

if ctld_up && [ -n "$(node_state node1)" ]; then
    say "slurmctld already running"
else
    install -d -m 0755 "$LOG_DIR" "$CTLD_SPOOL"
    write_conf
    for node in "${node_names[@]}"; do stop_matching "$(slurmd_pattern "$node")" "/run/slurmd-nodes-$node.pid"; done
    stop_matching "$CTLD_PATTERN" /run/slurmctld-nodes.pid
    say "starting slurmctld on $NET.1:$CTLD_PORT"
    slurmctld -f "$CONF" -c || die "slurmctld failed to start"
fi

start_slurmd() {
    local node="$1" i="${1#node}"
    install -d -m 0755 "$SLURMD_SPOOL/$node"
    say "starting slurmd for $node in network namespace dcr-$node"
    # The daemon and every job step it starts live in the node's namespace: its address, its links.
    # nsenter, not `ip netns exec`: that one remounts /sys, hiding the cgroup tree slurmd looks for.
    nsenter --net="/run/netns/dcr-$node" slurmd -f "$CONF" -N "$node" || die "slurmd for $node failed to start"
}
for node in "${node_names[@]}"; do
    [ -n "$(pids_matching "$(slurmd_pattern "$node")")" ] || start_slurmd "$node"
done

# ---------------------------------------------------------------- wait until usable
say "waiting up to ${TIMEOUT}s for ${node_names[*]} to run a job step each"
deadline=$(( SECONDS + TIMEOUT ))
declare -A ran=()
while [ "$SECONDS" -lt "$deadline" ] && [ "${#ran[@]}" -lt "$NODES" ]; do
    for node in "${node_names[@]}"; do
        [ -n "${ran[$node]:-}" ] && continue
        [ -n "$(pids_matching "$(slurmd_pattern "$node")")" ] || start_slurmd "$node"
        case "$(node_state "$node")" in
            idle|mixed|allocated|completing)
                # The step prints the address it sees: proof that it ran inside the node's namespace.
                out="$(timeout 30 srun -w "$node" -N1 -n1 --mem=100M -t 1 \
                    ip -4 -o addr show dev "$IFACE" 2>/dev/null || true)"
                if [[ "$out" == *"$NET.1${node#node}/"* ]]; then ran[$node]=1; fi ;;
            down*|drain*|drained*)
                scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
        esac
    done
    [ "${#ran[@]}" -lt "$NODES" ] && sleep 1
done
if [ "${#ran[@]}" -lt "$NODES" ]; then
    for node in "${node_names[@]}"; do
        [ -n "${ran[$node]:-}" ] || die "$node not usable after ${TIMEOUT}s (state '$(node_state "$node")', reason '$(sinfo -h -N -n "$node" -o '%E' 2>/dev/null || true)')"
    done
fi

# What the tests need to know, in one place.
{
    echo "{"
    echo "  \"conf\": \"$CONF\", \"partition\": \"$PARTITION\", \"interface\": \"$IFACE\","
    echo "  \"controller\": \"$NET.1\", \"cpus_per_node\": $(nproc),"
    echo "  \"nodes\": {"
    for i in $(seq 1 "$NODES"); do
        sep=","; [ "$i" -eq "$NODES" ] && sep=""
        echo "    \"node$i\": {\"netns\": \"dcr-node$i\", \"address\": \"$NET.1$i\"}$sep"
    done
    echo "  }"
    echo "}"
} >"$CONF_DIR/cluster.json.tmp"
mv "$CONF_DIR/cluster.json.tmp" "$CONF_DIR/cluster.json"
say "ready: ${node_names[*]} each ran a job step in its own namespace"
sinfo
