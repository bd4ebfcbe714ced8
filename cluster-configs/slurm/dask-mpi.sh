#!/bin/bash
# One SLURM allocation holds the whole dask cluster: dask-mpi starts the scheduler on rank 0 and
# workers on the other ranks and writes a scheduler file; parallelzarr connects to it with
# --cluster SCHEDULER_FILE.json. Use this where a site prefers one big job over many small ones
# (or forbids jobs submitting jobs). Needs `pip install dask-mpi mpi4py` in the environment.
#   sbatch cluster-configs/slurm/dask-mpi.sh 'in/*.nc' /scratch/$USER/out.zarr
#SBATCH --job-name=pz-mpi
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --cpus-per-task=2
#SBATCH --mem-per-cpu=4G
#SBATCH --time=02:00:00
#SBATCH --output=pz-mpi-%j.log
set -euo pipefail

INPUTS=${1:?usage: sbatch dask-mpi.sh 'INPUT_GLOB' TARGET}
TARGET=${2:?usage: sbatch dask-mpi.sh 'INPUT_GLOB' TARGET}
SCHED=${PZ_SCHEDULER_FILE:-$PWD/scheduler-${SLURM_JOB_ID:-0}.json}

source .venv/bin/activate
rm -f "$SCHED"
# --no-nanny: MPI ranks are the processes; the launcher already restarts nothing.
srun --ntasks=$((SLURM_NTASKS - 1)) dask-mpi --scheduler-file "$SCHED" --nthreads "${SLURM_CPUS_PER_TASK:-1}" \
    --memory-limit auto --local-directory "${TMPDIR:-/tmp}" --no-nanny &
MPI_PID=$!
# Without dask-mpi the same works with:  dask scheduler --scheduler-file "$SCHED" &
#                                         srun dask worker --scheduler-file "$SCHED" &
for _ in $(seq 120); do [ -s "$SCHED" ] && break; sleep 1; done
[ -s "$SCHED" ] || { echo "scheduler file $SCHED never appeared" >&2; kill "$MPI_PID"; exit 1; }

status=0
parallelzarr write "$INPUTS" "$TARGET" --chunks time=24 --cluster "$SCHED" --no-progress || status=$?
# Stop the cluster: the scheduler's ranks exit when it shuts down.
python -c "from distributed import Client; Client(scheduler_file='$SCHED').shutdown()" || true
wait "$MPI_PID" || true
exit "$status"
