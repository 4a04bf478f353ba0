#!/usr/bin/env bash
# Start, inspect and stop a single-node Slurm cluster on this host, for the
# Slurm test (tests/test_slurm.py) and for trying the Slurm profile by hand.
#
#   tests/slurm/cluster.sh install            apt-get install slurm-wlm munge (root)
#   tests/slurm/cluster.sh start STATE_DIR    write STATE_DIR/slurm.conf, start munged
#                                             (unless running), slurmctld and slurmd,
#                                             wait until the node is idle
#   tests/slurm/cluster.sh stop STATE_DIR     stop what `start` started
#
# Everything lives in STATE_DIR (configuration, state, logs, pid files);
# nothing is written to /etc/slurm. Client tools find the cluster through
# SLURM_CONF=STATE_DIR/slurm.conf, which `start` prints as its last line.
# Environment: RBDA_SLURM_PARTITION (default rbda-test), RBDA_SLURM_CTLD_PORT
# (default 6817), RBDA_SLURM_SLURMD_PORT (default 6818).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
partition="${RBDA_SLURM_PARTITION:-rbda-test}"
ctld_port="${RBDA_SLURM_CTLD_PORT:-6817}"
slurmd_port="${RBDA_SLURM_SLURMD_PORT:-6818}"

die() { echo "cluster.sh: $*" >&2; exit 1; }

need_root() { [[ "$(id -u)" == 0 ]] || die "must run as root (daemons, apt)"; }

install_packages() {
    need_root
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        echo "slurm-wlm and munge already installed"
        return 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends slurm-wlm munge
}

# Kill the process named in a pid file, if it is still running, and wait for it.
stop_pidfile() {
    local pidfile="$1" pid
    [[ -f "$pidfile" ]] || return 0
    pid="$(cat "$pidfile")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

start_munge() {
    local state="$1"
    if pgrep -x munged >/dev/null; then
        echo "munged already running; leaving it alone"
        return 0
    fi
    install -d -o munge -g munge -m 0755 /run/munge "$state/munge"
    runuser -u munge -- munged --pid-file="$state/munge/munged.pid" \
        || die "munged did not start"
    # Only a munged started here is stopped by `stop`.
    touch "$state/munged.started-here"
    for _ in $(seq 50); do [[ -S /run/munge/munge.socket.2 ]] && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munge round trip failed"
}

write_conf() {
    local state="$1" node cpus mem_kb real_mb
    node="$(hostname -s)"
    cpus="$(nproc --all)"
    mem_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    # Leave 1 GiB to the operating system and the daemons.
    real_mb=$(( mem_kb / 1024 - 1024 ))
    mkdir -p "$state/ctld" "$state/spool"
    sed -e "s|@NODE@|$node|g" -e "s|@CPUS@|$cpus|g" \
        -e "s|@REAL_MEMORY_MB@|$real_mb|g" -e "s|@STATE_DIR@|$state|g" \
        -e "s|@PARTITION@|$partition|g" -e "s|@CTLD_PORT@|$ctld_port|g" \
        -e "s|@SLURMD_PORT@|$slurmd_port|g" \
        "$here/slurm.conf.in" > "$state/slurm.conf"
}

start_cluster() {
    need_root
    local state="$1" node state_line
    mkdir -p "$state"
    state="$(cd "$state" && pwd)"
    export SLURM_CONF="$state/slurm.conf"
    write_conf "$state"
    start_munge "$state"
    # -c: start from a clean state (no jobs from an earlier run of the test).
    slurmctld -c || die "slurmctld did not start; see $state/slurmctld.log"
    slurmd || die "slurmd did not start; see $state/slurmd.log"
    node="$(hostname -s)"
    for _ in $(seq 150); do
        state_line="$(sinfo --noheader --nodes="$node" --format=%T 2>/dev/null || true)"
        if [[ "$state_line" == "idle" ]]; then
            echo "SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.2
    done
    die "node $node not idle after 30 s (state: '${state_line:-none}'); see $state/*.log"
}

stop_cluster() {
    local state="$1"
    [[ -d "$state" ]] || return 0
    state="$(cd "$state" && pwd)"
    export SLURM_CONF="$state/slurm.conf"
    if [[ -f "$state/slurmctld.pid" ]] && kill -0 "$(cat "$state/slurmctld.pid")" 2>/dev/null; then
        # Cancel what is left so that no job outlives the cluster, then stop
        # slurmctld and every slurmd it knows of.
        scancel --full --quiet --partition="$partition" 2>/dev/null || true
        timeout 20 scontrol shutdown >/dev/null 2>&1 || true
    fi
    stop_pidfile "$state/slurmd.pid"
    stop_pidfile "$state/slurmctld.pid"
    if [[ -f "$state/munged.started-here" ]]; then
        stop_pidfile "$state/munge/munged.pid"
        rm -f "$state/munged.started-here"
    fi
}

case "${1:-}" in
    install) install_packages ;;
    start) [[ $# == 2 ]] || die "usage: $0 start STATE_DIR"; start_cluster "$2" ;;
    stop) [[ $# == 2 ]] || die "usage: $0 stop STATE_DIR"; stop_cluster "$2" ;;
    *) die "usage: $0 install | start STATE_DIR | stop STATE_DIR" ;;
esac
