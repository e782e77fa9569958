"""examples/notebook.ipynb runs top to bottom in a Jupyter kernel (nbclient), the connector
made in one cell living on in the next ones."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(180)

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"


def text_of(cell: nbformat.NotebookNode) -> str:
    outputs = cell.get("outputs", [])
    return "".join(out.get("text", "") for out in outputs if out.get("name") == "stdout")


def test_the_notebook_runs_with_the_connector_living_across_cells(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assert not any("nest_asyncio" in source or "asyncio.run" in source for source in code)
    # the kernel talks over Unix sockets in tmp_path, not TCP
    kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"))
    client = NotebookClient(
        notebook, km=kernel, timeout=60, resources={"metadata": {"path": tmp_path}}
    )
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        if kernel.has_kernel:  # nbclient stops only a kernel it made itself
            kernel.shutdown_kernel(now=True)
    outputs = [text_of(cell) for cell in notebook.cells if cell.cell_type == "code"]
    _start, connect, quotes, order, disconnect = outputs
    assert re.match(r"connected \('DU\w+',\)", connect), connect
    assert len(re.findall(r"^AAPL bid [\d.]+ ask [\d.]+$", quotes, re.M)) == 3, quotes
    assert quotes.endswith("still connected\n"), quotes  # the connection of an earlier cell
    assert re.match(r"filled 10.0 [\d.]+\nposition 10.0\n", order), order
    assert disconnect == "closed\n", disconnect
