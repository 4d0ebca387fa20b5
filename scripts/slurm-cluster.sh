#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for crunch's Slurm tests and for trying
# `crunch submit` by hand. Run as root; needs Debian's slurm-wlm and munge packages.
#
# Idempotent: it starts munged, slurmctld and slurmd when they are not running, waits
# until the node is idle, then prints the environment to use, e.g.
#     eval "$(scripts/slurm-cluster.sh)"      # sets SLURM_CONF
#     sbatch --array=1-3 --wrap hostname
# `scripts/slurm-cluster.sh stop` stops the three daemons.
#
# Everything lives under CRUNCH_SLURM_DIR (default /tmp/crunch-slurm): munge key and
# socket, slurm.conf, state and spool folders, logs. The ports are picked once, among
# unused ones, and kept in slurm.conf.
set -euo pipefail

DIR="${CRUNCH_SLURM_DIR:-/tmp/crunch-slurm}"
CONF="$DIR/slurm.conf"
MUNGE_SOCKET="$DIR/munge/munge.socket.2"
export SLURM_CONF="$CONF"

say() { echo "slurm-cluster: $*" >&2; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local port="$1"
    while ! port_free "$port"; do port=$((port + 1)); done
    echo "$port"
}

stop() {
    for name in slurmd slurmctld munged; do
        if pid_alive "$DIR/$name.pid"; then
            kill "$(cat "$DIR/$name.pid")" && say "stopped $name"
        fi
    done
}

if [[ "${1:-}" == "stop" ]]; then
    stop
    exit 0
fi

for tool in munged mungekey slurmctld slurmd sbatch scontrol; do
    if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$tool" ]]; then
        say "$tool is not installed: apt-get install -y slurm-wlm munge"
        exit 1
    fi
done
PATH="$PATH:/usr/sbin"

mkdir -p "$DIR"/{munge,state,spool,log}
chmod 0700 "$DIR/munge"

# munge: a key of our own and a socket under $DIR.
if [[ ! -s "$DIR/munge/munge.key" ]]; then
    mungekey --create --keyfile="$DIR/munge/munge.key" --force
    chmod 0400 "$DIR/munge/munge.key"
fi
if ! pid_alive "$DIR/munged.pid"; then
    munged --force --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    say "started munged"
fi

# slurm.conf: written once; its ports stay the same on later runs.
if [[ ! -s "$CONF" ]]; then
    host="$(hostname -s)"
    ctld_port="$(free_port 16817)"
    slurmd_port="$(free_port $((ctld_port + 1)))"
    memory_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
    cat >"$CONF" <<EOF
# A single-node cluster for crunch's tests (scripts/slurm-cluster.sh).
ClusterName=crunch
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
# Short timers: tests wait for jobs to start, end and leave squeue.
MinJobAge=30
KillWait=10
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    say "wrote $CONF (ports $ctld_port, $slurmd_port)"
fi

if ! pid_alive "$DIR/slurmctld.pid"; then
    slurmctld -f "$CONF"
    say "started slurmctld"
fi
for _ in $(seq 50); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
if ! pid_alive "$DIR/slurmd.pid"; then
    slurmd -f "$CONF"
    say "started slurmd"
fi

# Ready when the node takes jobs.
for _ in $(seq 100); do
    state="$(sinfo -h -o %t 2>/dev/null | head -1 || true)"
    case "$state" in
        idle|mix|alloc) break ;;
        down*|drain*) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.2
done
case "$state" in
    idle|mix|alloc) ;;
    *)
        say "the node is not ready (state ${state:-unknown}): see $DIR/log/"
        exit 1
        ;;
esac

echo "export SLURM_CONF=$CONF"
