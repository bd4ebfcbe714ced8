#!/bin/bash
# One write as a SLURM job array: no dask cluster, no network between tasks, no long-lived scheduler.
#
#   bash cluster-configs/slurm/job-array.sh 'in/*.nc' /scratch/$USER/out.zarr 16 [extra write options...]
#
# run on a login node: it (1) validates the write and lays down the store's metadata unpublished
# (`parallelzarr init --parts N`), (2) submits the array `--array=0-(N-1)`, each task writing its own
# part (`parallelzarr write ... --part $SLURM_ARRAY_TASK_ID/N`: whole grid cells no other part
# writes, so no lock; each task reads only the inputs its cells need, on the threads of its node),
# (3) submits `parallelzarr finalize` depending on the array (afterany: it runs even if a task
# failed, and then lists the missing parts and publishes nothing). Readers see nothing (a new store)
# or the old store (an append) until finalize. A task killed by its walltime is simply resubmitted
# (`sbatch --array=3,7 ...` as finalize prints): it skips the work it finished. Extra options (e.g.
# --append-dim time, --region time=0:240, --encoding enc.json) go to init and to every part alike.
# Edit the #SBATCH lines of the part tasks below (PZ_SBATCH) for your site.
set -euo pipefail

INPUTS=${1:?usage: job-array.sh 'INPUT_GLOB' TARGET PARTS [write options...]}
TARGET=${2:?usage: job-array.sh 'INPUT_GLOB' TARGET PARTS [write options...]}
PARTS=${3:?usage: job-array.sh 'INPUT_GLOB' TARGET PARTS [write options...]}
shift 3
# Absolute paths: the tasks may start in another directory on another node.
PZ=${PZ:-$(command -v parallelzarr || true)}
[ -n "$PZ" ] || { echo "job-array.sh: parallelzarr is not on PATH; activate its environment or set PZ=/path/to/parallelzarr" >&2; exit 1; }
command -v sbatch > /dev/null || { echo "job-array.sh: no sbatch here; run this on a login node of the SLURM cluster" >&2; exit 1; }
PZ=$(readlink -f "$PZ")
case "$TARGET" in *://*) ;; *) TARGET=$(readlink -m "$TARGET") ;; esac
case "$INPUTS" in /*|*://*) ;; *) INPUTS="$PWD/$INPUTS" ;; esac
PZ_SBATCH=${PZ_SBATCH:---time=02:00:00 --cpus-per-task=8 --mem=16G}
LOGS=${PZ_LOGS:-$PWD/pz-logs}
mkdir -p "$LOGS"

# Appends take their part flag on `append`, everything else on `write`.
COMMAND=write
for arg in "$@"; do [ "$arg" = "--append-dim" ] && COMMAND=append; done
QUOTED=$(printf '%q ' "$@")

"$PZ" init "$INPUTS" "$TARGET" --parts "$PARTS" "$@"

# shellcheck disable=SC2086  # PZ_SBATCH holds several options
ARRAY=$(sbatch --parsable $PZ_SBATCH --job-name=pz-part --array="0-$((PARTS - 1))" \
    --output="$LOGS/pz-part-%A_%a.log" \
    --wrap="$(printf '%q' "$PZ") $COMMAND $(printf '%q' "$INPUTS") $(printf '%q' "$TARGET") --no-progress --part \"\$SLURM_ARRAY_TASK_ID/$PARTS\" $QUOTED")
ARRAY=${ARRAY%%;*}
FINAL=$(sbatch --parsable --time=00:30:00 --cpus-per-task=1 --mem=2G --job-name=pz-finalize \
    --dependency="afterany:$ARRAY" --output="$LOGS/pz-finalize-%j.log" \
    --wrap="$(printf '%q' "$PZ") finalize $(printf '%q' "$TARGET")")
echo "submitted parts: job $ARRAY (--array=0-$((PARTS - 1))), finalize: job ${FINAL%%;*} (after the array)"
