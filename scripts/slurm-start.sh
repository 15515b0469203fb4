#!/usr/bin/env bash
# Installs (when missing) and starts a single-node Slurm on this machine, for
# `cargo xtask sweep --backend slurm` and its test: munge, slurmctld and slurmd, with a slurm.conf
# that describes this machine as `slurmd -C` sees it (docs/TOOLCHAIN.md §10 has the facts it rests on).
#
# Idempotent: a node that is already up is left alone, and a slurm.conf this script did not write
# is never replaced. Needs root (apt-get, daemons); no systemd.
#
# Exit status: 0 when `sinfo` shows the node ready; 77 when Slurm is missing and cannot be
# installed here (not root, no apt-get, or the packages cannot be fetched), so callers can skip;
# anything else is a real failure.
set -euo pipefail

log() { echo "slurm-start: $*" >&2; }
CONF=/etc/slurm/slurm.conf
MARK="# Written by flowvae scripts/slurm-start.sh"
NODE=$(hostname -s)

node_ready() {
  command -v sinfo >/dev/null 2>&1 || return 1
  local state
  state=$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1) || return 1
  case "$state" in
    idle | mixed | allocated | completing) return 0 ;;
    *) return 1 ;;
  esac
}

if node_ready; then
  log "node $NODE is up ($(sinfo -h -N -n "$NODE" -o '%T' | head -n1)); nothing to do"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  log "Slurm is not running here and starting it needs root; skipping"
  exit 77
fi

# 1. Packages.
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
  || ! command -v munged >/dev/null 2>&1 || ! command -v sbatch >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    log "slurm-wlm and munge are not installed and there is no apt-get; skipping"
    exit 77
  fi
  log "installing slurm-wlm and munge with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q slurm-wlm munge >/tmp/slurm-start-apt.log 2>&1; then
    apt-get update -q >>/tmp/slurm-start-apt.log 2>&1 || true
    if ! apt-get install -y -q slurm-wlm munge >>/tmp/slurm-start-apt.log 2>&1; then
      log "apt-get could not install slurm-wlm and munge (see /tmp/slurm-start-apt.log); skipping"
      exit 77
    fi
  fi
fi

# 2. munge: the key comes with the package.
mkdir -p /run/munge
chown munge:munge /run/munge
chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
  done
  munge -n | unmunge >/dev/null
fi

# 3. slurm.conf, from what slurmd sees of this machine.
HW=$(slurmd -C | head -n1 | sed -E 's/^NodeName=[^ ]+ //')
WANT=$(
  cat <<EOF
$MARK; rerun it rather than editing by hand.
ClusterName=local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
NodeName=$NODE NodeAddr=127.0.0.1 $HW State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop() {
  local pidfile=$1
  if running "$pidfile"; then
    local pid
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
}
if [ ! -e "$CONF" ] || head -n1 "$CONF" | grep -qF "$MARK"; then
  if [ "$(cat "$CONF" 2>/dev/null)" != "$WANT" ]; then
    log "writing $CONF for node $NODE ($HW)"
    printf '%s\n' "$WANT" >"$CONF"
    # Daemons read the node line at start only.
    stop /run/slurmd.pid
    stop /run/slurmctld.pid
  fi
else
  log "$CONF was not written by this script; using it as it is"
fi

# 4. Daemons (they fork and write their PID files).
if ! running /run/slurmctld.pid; then
  log "starting slurmctld"
  slurmctld
fi
if ! running /run/slurmd.pid; then
  log "starting slurmd"
  slurmd
fi

# 5. Wait for the node; bring it back if an earlier run left it down or drained.
for i in $(seq 60); do
  if node_ready; then
    log "node $NODE is $(sinfo -h -N -n "$NODE" -o '%T' | head -n1)"
    exit 0
  fi
  if [ "$i" = 10 ]; then
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
  fi
  sleep 0.5
done
log "the node did not become ready in 30 s:"
sinfo -N -l >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
