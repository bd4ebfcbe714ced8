#!/bin/bash
# Run one parallelzarr write from a small SLURM job; the dask workers are further SLURM jobs
# submitted by dask-jobqueue (slurm/jobqueue.yaml). The scheduler lives in this job, so this job's
# walltime must cover the whole write. Submit with:  sbatch cluster-configs/slurm/sbatch-write.sh IN_GLOB OUT
#SBATCH --job-name=pz-write
#SBATCH --time=04:00:00
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --output=pz-write-%j.log
set -euo pipefail

INPUTS=${1:?usage: sbatch sbatch-write.sh 'INPUT_GLOB' TARGET [WORKER_JOBS]}
TARGET=${2:?usage: sbatch sbatch-write.sh 'INPUT_GLOB' TARGET [WORKER_JOBS]}
JOBS=${3:-4}
CONFIG=${PZ_CLUSTER_CONFIG:-cluster-configs/slurm/jobqueue.yaml}

source .venv/bin/activate
# --no-progress: batch logs are not terminals. --report keeps the dask dashboard for later.
parallelzarr write "$INPUTS" "$TARGET" \
    --chunks time=24 \
    --cluster "$CONFIG" --workers "$JOBS" \
    --no-progress --report "pz-write-${SLURM_JOB_ID:-local}.html"
