"""Every notebook is a test: papermill runs it against the live stack; its asserts decide."""

from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
OUTPUT = ROOT / "tests" / "output"  # executed copies, git-ignored, for inspection


@pytest.mark.live
@pytest.mark.timeout(300)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook(lab, notebook):
    OUTPUT.mkdir(exist_ok=True)
    papermill.execute_notebook(
        str(notebook),
        str(OUTPUT / notebook.name),
        cwd=str(notebook.parent),
        kernel_name="python3",
        execution_timeout=240,
        progress_bar=False,
    )
