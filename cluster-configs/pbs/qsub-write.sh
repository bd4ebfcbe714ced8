#!/bin/bash
# Run one parallelzarr write from a small PBS job; the dask workers are further PBS jobs submitted
# by dask-jobqueue (pbs/jobqueue.yaml). This job's walltime must cover the whole write.
#   qsub -v INPUTS='in/*.nc',TARGET=/scratch/$USER/out.zarr,JOBS=4 cluster-configs/pbs/qsub-write.sh
#PBS -N pz-write
#PBS -l select=1:ncpus=2:mem=8GB
#PBS -l walltime=04:00:00
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR:-$PWD}"

: "${INPUTS:?pass -v INPUTS=...}"
: "${TARGET:?pass -v TARGET=...}"
JOBS=${JOBS:-4}
CONFIG=${PZ_CLUSTER_CONFIG:-cluster-configs/pbs/jobqueue.yaml}

source .venv/bin/activate
parallelzarr write "$INPUTS" "$TARGET" \
    --chunks time=24 \
    --cluster "$CONFIG" --workers "$JOBS" \
    --no-progress --report "pz-write-${PBS_JOBID:-local}.html"
