#!/bin/bash
# One PBS allocation holds the whole dask cluster (dask-mpi: scheduler on rank 0, workers on the
# other ranks, a scheduler file for clients); parallelzarr connects with --cluster SCHEDULER_FILE.json.
# Needs `pip install dask-mpi mpi4py`.
#   qsub -v INPUTS='in/*.nc',TARGET=/scratch/$USER/out.zarr cluster-configs/pbs/dask-mpi.sh
#PBS -N pz-mpi
#PBS -l select=2:ncpus=16:mpiprocs=8:mem=64GB
#PBS -l walltime=02:00:00
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR:-$PWD}"

: "${INPUTS:?pass -v INPUTS=...}"
: "${TARGET:?pass -v TARGET=...}"
JOBID=${PBS_JOBID:-0}
SCHED=${PZ_SCHEDULER_FILE:-$PWD/scheduler-${JOBID%%.*}.json}
NRANKS=$(wc -l < "${PBS_NODEFILE:-/dev/null}" || echo 2)

source .venv/bin/activate
rm -f "$SCHED"
mpirun -np "$NRANKS" dask-mpi --scheduler-file "$SCHED" --nthreads 2 --memory-limit auto \
    --local-directory "${TMPDIR:-/tmp}" --no-nanny &
MPI_PID=$!
for _ in $(seq 120); do [ -s "$SCHED" ] && break; sleep 1; done
[ -s "$SCHED" ] || { echo "scheduler file $SCHED never appeared" >&2; kill "$MPI_PID"; exit 1; }

status=0
parallelzarr write "$INPUTS" "$TARGET" --chunks time=24 --cluster "$SCHED" --no-progress || status=$?
python -c "from distributed import Client; Client(scheduler_file='$SCHED').shutdown()" || true
wait "$MPI_PID" || true
exit "$status"
