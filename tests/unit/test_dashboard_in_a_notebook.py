"""The live dashboard in a real kernel: it redraws only its own output, and the saved
notebook keeps its last frame as an image. Prometheus is a stand-in with no data yet."""

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(90)

SHOW = """\
import pandas as pd
from labkit import dashboard

class NoDataYet:
    def query(self, *_args, **_kwargs):
        return pd.DataFrame(columns=["time", "value"])

dashboard.show(NoDataYet(), refresh=0.2, duration=3, live=True);
"""
NEXT = """\
import time
for second in range(4):  # the dashboard redraws meanwhile
    print(f"next cell, line {second}")
    time.sleep(1)
"""
# The refresh thread draws a 2x3 figure per frame: on a busy machine its last word came after
# NEXT had ended (and with it the execution). Wait for it, bounded, before saving.
JOIN = """\
import threading
for thread in threading.enumerate():
    if thread.name == "labkit-dashboard":
        thread.join(timeout=30)
"""


@pytest.fixture(scope="module")
def executed() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(code) for code in (SHOW, NEXT, JOIN)])
    NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    return notebook


def _text(outputs: list) -> str:
    return "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")


def test_a_print_in_the_next_cell_stays_in_that_cell(executed):
    dashboard_cell, next_cell, _ = executed.cells
    assert _text(next_cell.outputs).count("next cell, line") == 4, next_cell.outputs
    assert "next cell" not in str(dashboard_cell.outputs)
    assert "stopped refreshing after 3 s" in str(dashboard_cell.outputs), (
        "the refresh thread's last word should land in the dashboard's own output")


def test_the_saved_notebook_shows_the_dashboard_as_an_image(executed):
    dashboard_cell = executed.cells[0]
    assert any("image/png" in o.get("data", {}) for o in dashboard_cell.outputs), (
        f"no image/png among {[o['output_type'] for o in dashboard_cell.outputs]}")
