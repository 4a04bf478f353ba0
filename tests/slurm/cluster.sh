#!/usr/bin/env bash
# Start, inspect and stop a single-node Slurm cluster on this host, for the
# Slurm test (tests/test_slurm.py) and for trying the Slurm profile by hand.
#
#   tests/slurm/cluster.sh install            apt-get install slurm-wlm munge (root)
#   tests/slurm/cluster.sh start STATE_DIR    write the configuration, start munged
#                                             (unless running), slurmctld and slurmd,
#                                             wait until the node is idle
#   tests/slurm/cluster.sh stop STATE_DIR     cancel leftover jobs, stop what `start`
#                                             started, remove the configuration
#
# The cluster: this host as its one node, partitions rbda-cpu (default) and
# rbda-gpu, two stand-in GPUs (slurm.conf.in). State, logs and pid files live
# in STATE_DIR. The configuration goes to /etc/slurm/slurm.conf and gres.conf,
# the only place every Slurm client finds it: the Snakemake job step strips
# SLURM_* variables, SLURM_CONF included, before calling srun inside a job.
# `start` refuses to overwrite a configuration it did not write; `stop`
# removes its own, so the host is unconfigured again afterwards (a
# configuration naming a stopped controller makes every `scontrol` call, and
# so every `snakemake` start, wait about 9 s for it).
# Environment: RBDA_SLURM_CTLD_PORT (default 6817), RBDA_SLURM_SLURMD_PORT (6818).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
conf_dir=/etc/slurm
ownership_mark="# written by rbda tests/slurm/cluster.sh"
munged_pidfile=/run/munge/rbda-test-munged.pid
ctld_port="${RBDA_SLURM_CTLD_PORT:-6817}"
slurmd_port="${RBDA_SLURM_SLURMD_PORT:-6818}"
# How long `start` waits for the pid files and for the node to be idle.
start_timeout_s=30

die() { echo "cluster.sh: $*" >&2; exit 1; }

need_root() { [[ "$(id -u)" == 0 ]] || die "must run as root (daemons, apt, /etc/slurm)"; }

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
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$pidfile"
}

# The pid a daemon wrote to its pid file; empty while the file is missing or
# not yet complete.
daemon_pid() {
    local pid=""
    if [[ -s "$1" ]]; then pid="$(head -n 1 "$1" 2>/dev/null || true)"; fi
    if [[ "$pid" =~ ^[0-9]+$ ]]; then echo "$pid"; fi
}

# Whether process PID is running and is DAEMON (not an unrelated process that
# was given a recycled pid).
daemon_running() {
    kill -0 "$1" 2>/dev/null && [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]]
}

# Remove a pid file left by a daemon that is gone; a daemon still running is an error.
clear_stale_pidfile() {
    local pidfile="$1" daemon="$2" state="$3" pid
    pid="$(daemon_pid "$pidfile")"
    if [[ -n "$pid" ]] && daemon_running "$pid" "$daemon"; then
        die "$daemon is already running (pid $pid in $pidfile); run '$0 stop $state' first"
    fi
    rm -f "$pidfile"
}

owned_by_us() { [[ -f "$1" ]] && head -n 1 "$1" | grep -qxF "$ownership_mark"; }

start_munge() {
    local state="$1"
    if pgrep -x munged >/dev/null; then
        echo "munged already running; leaving it alone"
        return 0
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    # The pid file goes where munged can write it (STATE_DIR may be private to root).
    # Daemons get their own stdio, so that a caller reading this script's output
    # through a pipe is not kept waiting by them.
    runuser -u munge -- munged --pid-file="$munged_pidfile" \
        </dev/null >"$state/munged.out" 2>&1 || die "munged did not start: $(cat "$state/munged.out")"
    # Only a munged started here is stopped by `stop`.
    touch "$state/munged.started-here"
    for _ in $(seq 50); do [[ -S /run/munge/munge.socket.2 ]] && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munge round trip failed"
}

write_conf() {
    local state="$1" node cpus mem_kb real_mb file
    for file in slurm.conf gres.conf; do
        if [[ -e "$conf_dir/$file" ]] && ! owned_by_us "$conf_dir/$file"; then
            die "$conf_dir/$file exists and was not written by this script; not touching it"
        fi
    done
    node="$(hostname -s)"
    cpus="$(nproc --all)"
    mem_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    # Leave 1 GiB to the operating system and the daemons.
    real_mb=$(( mem_kb / 1024 - 1024 ))
    mkdir -p "$conf_dir" "$state/ctld" "$state/spool"
    {
        echo "$ownership_mark"
        sed -e "s|@NODE@|$node|g" -e "s|@CPUS@|$cpus|g" \
            -e "s|@REAL_MEMORY_MB@|$real_mb|g" -e "s|@STATE_DIR@|$state|g" \
            -e "s|@CTLD_PORT@|$ctld_port|g" -e "s|@SLURMD_PORT@|$slurmd_port|g" \
            "$here/slurm.conf.in"
    } > "$conf_dir/slurm.conf"
    {
        echo "$ownership_mark"
        sed -e "s|@NODE@|$node|g" "$here/gres.conf.in"
    } > "$conf_dir/gres.conf"
}

start_cluster() {
    need_root
    local state="$1" node node_state="" daemon pid up deadline
    mkdir -p "$state"
    state="$(cd "$state" && pwd)"
    write_conf "$state"
    start_munge "$state"
    # A pid file left by an earlier run would be judged instead of the new daemon's.
    for daemon in slurmctld slurmd; do clear_stale_pidfile "$state/$daemon.pid" "$daemon" "$state"; done
    # -c: start from a clean state (no jobs from an earlier run of the test).
    slurmctld -c </dev/null >"$state/slurmctld.out" 2>&1 \
        || die "slurmctld did not start: $(cat "$state/slurmctld.out"); see $state/slurmctld.log"
    slurmd </dev/null >"$state/slurmd.out" 2>&1 \
        || die "slurmd did not start: $(cat "$state/slurmd.out"); see $state/slurmd.log"
    node="$(hostname -s)"
    # Both daemons fork into the background: the commands above return before
    # the child has written its pid file (under load, well before). A missing
    # pid file means "not yet", so liveness is judged only once the file is
    # there; a daemon that never writes one fails at the deadline, with its log.
    deadline=$(( SECONDS + start_timeout_s ))
    while :; do
        up=0
        for daemon in slurmctld slurmd; do
            pid="$(daemon_pid "$state/$daemon.pid")"
            if [[ -z "$pid" ]]; then
                (( SECONDS < deadline )) \
                    || die "$daemon wrote no pid file in ${start_timeout_s} s: $(tail -n 3 "$state/$daemon.log" 2>/dev/null)"
            elif daemon_running "$pid" "$daemon"; then
                up=$(( up + 1 ))
            else
                die "$daemon (pid $pid) exited: $(tail -n 3 "$state/$daemon.log" 2>/dev/null)"
            fi
        done
        node_state="$(sinfo --noheader --nodes="$node" --format=%T 2>/dev/null | sort -u || true)"
        if [[ "$up" == 2 && "$node_state" == "idle" ]]; then
            echo "cluster up: node $node idle, configuration $conf_dir/slurm.conf, state $state"
            return 0
        fi
        (( SECONDS < deadline )) \
            || die "node $node not idle after ${start_timeout_s} s (state: '${node_state:-none}'); see $state/*.log"
        sleep 0.2
    done
}

stop_cluster() {
    need_root
    local state="$1" jobs
    if [[ -d "$state" ]]; then
        state="$(cd "$state" && pwd)"
        if [[ -f "$state/slurmctld.pid" ]] && kill -0 "$(cat "$state/slurmctld.pid")" 2>/dev/null; then
            # Cancel what is left so that no job outlives the cluster, then
            # stop slurmctld and every slurmd it knows of.
            jobs="$(squeue --noheader --states=PENDING,RUNNING,SUSPENDED --format=%i 2>/dev/null || true)"
            # shellcheck disable=SC2086  # one job id per word
            if [[ -n "$jobs" ]]; then scancel --full $jobs 2>/dev/null || true; fi
            timeout 20 scontrol shutdown >/dev/null 2>&1 || true
        fi
        stop_pidfile "$state/slurmd.pid"
        stop_pidfile "$state/slurmctld.pid"
        if [[ -f "$state/munged.started-here" ]]; then
            stop_pidfile "$munged_pidfile"
            rm -f "$state/munged.started-here"
        fi
    fi
    local file
    for file in slurm.conf gres.conf; do
        if owned_by_us "$conf_dir/$file"; then rm -f "$conf_dir/$file"; fi
    done
}

case "${1:-}" in
    install) install_packages ;;
    start) [[ $# == 2 ]] || die "usage: $0 start STATE_DIR"; start_cluster "$2" ;;
    stop) [[ $# == 2 ]] || die "usage: $0 stop STATE_DIR"; stop_cluster "$2" ;;
    *) die "usage: $0 install | start STATE_DIR | stop STATE_DIR" ;;
esac
