#!/bin/bash
# One write as a PBS Pro job array: no dask cluster, no network between tasks, no long-lived scheduler.
#
#   bash cluster-configs/pbs/job-array.sh 'in/*.nc' /scratch/$USER/out.zarr 16 [extra write options...]
#
# run on a login node: it (1) validates the write and lays down the store's metadata unpublished
# (`parallelzarr init --parts N`), (2) submits the array `-J 0-(N-1)`, each subjob writing its own
# part (`parallelzarr write ... --part $PBS_ARRAY_INDEX/N`: whole grid cells no other part writes,
# so no lock; each subjob reads only the inputs its cells need), (3) submits `parallelzarr finalize`
# depending on the array (afterany: it lists the missing parts and publishes nothing if a subjob
# failed). Readers see nothing (a new store) or the old store (an append) until finalize. Rerun a
# failed part (`qsub -J 3-3 ...`, or write --part 3/N by hand): it skips the work it finished.
# Extra options (--append-dim time, --region ..., --encoding enc.json) go to init and every part.
# Edit PZ_QSUB (resources, queue, account) for your site.
set -euo pipefail

INPUTS=${1:?usage: job-array.sh 'INPUT_GLOB' TARGET PARTS [write options...]}
TARGET=${2:?usage: job-array.sh 'INPUT_GLOB' TARGET PARTS [write options...]}
PARTS=${3:?usage: job-array.sh 'INPUT_GLOB' TARGET PARTS [write options...]}
shift 3
PZ=${PZ:-$(command -v parallelzarr || true)}
[ -n "$PZ" ] || { echo "job-array.sh: parallelzarr is not on PATH; activate its environment or set PZ=/path/to/parallelzarr" >&2; exit 1; }
command -v qsub > /dev/null || { echo "job-array.sh: no qsub here; run this on a login node of the PBS cluster" >&2; exit 1; }
PZ=$(readlink -f "$PZ")
case "$TARGET" in *://*) ;; *) TARGET=$(readlink -m "$TARGET") ;; esac
case "$INPUTS" in /*|*://*) ;; *) INPUTS="$PWD/$INPUTS" ;; esac
PZ_QSUB=${PZ_QSUB:--l walltime=02:00:00 -l select=1:ncpus=8:mem=16gb}
LOGS=${PZ_LOGS:-$PWD/pz-logs}
mkdir -p "$LOGS"

COMMAND=write
for arg in "$@"; do [ "$arg" = "--append-dim" ] && COMMAND=append; done
QUOTED=$(printf '%q ' "$@")

"$PZ" init "$INPUTS" "$TARGET" --parts "$PARTS" "$@"

PART_SCRIPT="$LOGS/pz-part.sh"
cat > "$PART_SCRIPT" <<SCRIPT
#!/bin/bash
set -euo pipefail
exec $(printf '%q' "$PZ") $COMMAND $(printf '%q' "$INPUTS") $(printf '%q' "$TARGET") --no-progress --part "\$PBS_ARRAY_INDEX/$PARTS" $QUOTED
SCRIPT
FINAL_SCRIPT="$LOGS/pz-finalize.sh"
printf '#!/bin/bash\nexec %q finalize %q\n' "$PZ" "$TARGET" > "$FINAL_SCRIPT"
chmod +x "$PART_SCRIPT" "$FINAL_SCRIPT"

# shellcheck disable=SC2086  # PZ_QSUB holds several options
ARRAY=$(qsub $PZ_QSUB -N pz-part -J "0-$((PARTS - 1))" -j oe -o "$LOGS" "$PART_SCRIPT")
FINAL=$(qsub -l walltime=00:30:00 -l select=1:ncpus=1:mem=2gb -N pz-finalize -j oe -o "$LOGS" \
    -W depend="afterany:$ARRAY" "$FINAL_SCRIPT")
echo "submitted parts: job $ARRAY (-J 0-$((PARTS - 1))), finalize: job $FINAL (after the array)"
