"""Execute every notebook in ``notebooks/`` in a temporary directory; no cell may fail.

Cells tagged ``plan-plot`` draw a plan; they must produce a PNG image. The kernel is the
``python3`` kernel spec installed into this interpreter's prefix by ``pip install ipykernel``
(jupyter_client runs it with ``sys.executable``), so notebooks run in the same environment as
the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
TIMEOUT = 300
PLOT_TAG = "plan-plot"


def _kernel_name() -> str:
    """The ``python3`` kernel spec of this environment; skip when there is none."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip("no python3 kernel spec; `pip install ipykernel` into this environment")
    # "python" in argv is replaced by sys.executable when the kernel starts; any other
    # interpreter would run the notebooks outside this environment.
    exe = spec.argv[0]
    assert exe in {"python", "python3", sys.executable}, f"python3 kernel runs {exe}, not {sys.executable}"
    return "python3"


def test_notebooks_exist() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01-write-and-plan.ipynb",
        "02-incremental-append.ipynb",
        "03-rechunk.ipynb",
        "04-hpc-batch.ipynb",
        "05-ingest-netcdf.ipynb",
    ]


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT + 120)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=TIMEOUT,
        kernel_name=_kernel_name(),
        resources={"metadata": {"path": str(tmp_path)}},
        allow_errors=False,
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:  # name the failing cell in the report
        pytest.fail(f"{path.name}: a cell failed:\n{exc}")

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors

    plot_cells = [c for c in nb.cells if PLOT_TAG in c.get("metadata", {}).get("tags", [])]
    if path.name != "04-hpc-batch.ipynb":  # 04 draws no plan
        assert plot_cells, f"{path.name} has no cell tagged {PLOT_TAG!r}"
    for cell in plot_cells:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images, f"{path.name}: plan-plot cell produced no image:\n{cell.source}"

    # the notebook worked in the temporary directory, not next to the notebooks
    assert not list(path.parent.glob("*.zarr"))
