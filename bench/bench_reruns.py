"""Re-runs: the README one-liner re-run 50 times in a real JupyterLab, in Chromium.

    .venv/bin/python bench/bench_reruns.py [--reruns 50]

JupyterLab (its own server, kernel and a headless Chromium page) runs a cell
whose last expression is ``monitor("sim/motor/1/Position", "mot2/Position",
"sim/camera/1/Image", "sim/motor/1/State")`` (the README's one-liner, its
session kept by IPython's ``Out``), waits until each new panel shows data, and
re-runs it. Measured after 3 warm-up runs and again after ``--reruns`` more:
the kernel's RSS (after a collection and ``malloc_trim``), the page's JS heap
and DOM nodes (after forced garbage collections), ``window.Bokeh.documents``
(10 s after the last run: the server discards retired sessions at its next check),
and the Jupyter log's lines above INFO (the kernel's stderr goes there too).
Baseline, in the same run and page: a cell printing one line, re-run as often
(what JupyterLab and the kernel themselves keep per execution). Targets: kernel
RSS growth ≤ 5 MB, heap growth ≤ 5 MB, 1 document, 0 log lines above INFO.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from _common import ROOT, control_system, servers

sys.path.insert(0, str(ROOT))

from tests.test_jupyterlab import (
    NotebookPage,
    launched_chromium,
    running_jupyterlab,
)
from tests.test_notebook import kernel_env

ONE_LINER = (
    'monitor("sim/motor/1/Position", "mot2/Position", "sim/camera/1/Image", "sim/motor/1/State")'
)
BASELINE = 'print("a line")'
SETUP = "from tango_bokeh.notebook import monitor"
#: The kernel's RSS in MB after a collection with freed heap pages returned to the OS.
KERNEL_RSS = (
    "import gc, ctypes, psutil; gc.collect(); ctypes.CDLL('libc.so.6').malloc_trim(0); "
    "print(psutil.Process().memory_info().rss / 2**20)"
)
ABOVE_INFO = re.compile(r"^\[(W|E|C) |WARNING|ERROR|CRITICAL|Traceback", re.MULTILINE)


def page_memory(context: Any, page: Any) -> dict[str, float]:
    cdp = context.new_cdp_session(page)
    try:
        for _ in range(3):
            cdp.send("HeapProfiler.collectGarbage")
        heap = cdp.send("Runtime.getHeapUsage")["usedSize"] / 2**20
        nodes = cdp.send("Memory.getDOMCounters")["nodes"]
    finally:
        cdp.detach()
    documents = page.evaluate("() => ((window.Bokeh && window.Bokeh.documents) || []).length")
    return {"heap_mb": heap, "dom_nodes": nodes, "documents": documents}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reruns", type=int, default=50)
    args = parser.parse_args()

    specs = servers("SimMotor", "SimCamera")
    with control_system(specs) as system, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "notebooks"
        root.mkdir()
        import nbformat

        book = nbformat.v4.new_notebook()
        book.cells = [nbformat.v4.new_code_cell(c) for c in (SETUP, ONE_LINER, BASELINE)]
        book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nbformat.write(book, root / "reruns.ipynb")
        env = kernel_env(tmp / "state", TANGO_HOST=system.tango_host)
        with (
            running_jupyterlab(root, env, tmp / "jupyter.log") as jupyter,
            launched_chromium(tmp / "chromium") as chromium,
        ):
            context = chromium.new_context(viewport={"width": 1400, "height": 1100})
            page = context.new_page()
            page.goto(
                f"{jupyter.url}lab/workspaces/bench-{uuid.uuid4().hex[:8]}/tree/reruns.ipynb"
                f"?reset&token={jupyter.token}"
            )
            notebook = NotebookPage(page)
            notebook.wait_kernel_idle()
            notebook.run(SETUP)
            kernel = jupyter.kernel_client(page)

            def rss() -> float:
                return float(kernel.run(KERNEL_RSS).strip().splitlines()[-1])

            def show() -> None:
                cell = notebook.run(ONE_LINER)
                cell.locator("canvas").first.wait_for(timeout=60_000)

            def measure(code: str, run: Any, count: int) -> dict[str, Any]:
                for _ in range(3):  # warm up
                    run()
                page.wait_for_timeout(3000)
                log_start = len(jupyter.log.read_text(errors="replace"))
                before = {"rss_mb": rss(), **page_memory(context, page)}
                for _ in range(count):
                    run()
                # the server discards retired sessions at its next check (2 s) and collects
                # their documents a second later
                page.wait_for_timeout(10_000)
                after = {"rss_mb": rss(), **page_memory(context, page)}
                log = jupyter.log.read_text(errors="replace")[log_start:]
                lines = [m.group(0) for m in ABOVE_INFO.finditer(log)]
                return {"code": code, "before": before, "after": after, "above_info": lines}

            baseline = measure(BASELINE, lambda: notebook.run(BASELINE), args.reruns)
            ours = measure(ONE_LINER, show, args.reruns)
            kernel.close()
            context.close()

    print(f"{args.reruns} re-runs after 3 warm-up runs, JupyterLab + Chromium")
    print(f"{'cell':<12}{'kernel RSS':>12}{'JS heap':>10}{'DOM nodes':>11}{'documents':>11}"
          f"{'log>INFO':>10}")  # fmt: skip
    for label, result in (("baseline", baseline), ("one-liner", ours)):
        b, a = result["before"], result["after"]
        rss, heap = a["rss_mb"] - b["rss_mb"], a["heap_mb"] - b["heap_mb"]
        print(
            f"{label:<12}{rss:>+10.1f}MB{heap:>+8.1f}MB"
            f"{a['dom_nodes'] - b['dom_nodes']:>+11d}{a['documents']:>11d}"
            f"{len(result['above_info']):>10d}"
        )
    print(json.dumps({"baseline": baseline, "one_liner": ours}))


if __name__ == "__main__":
    main()
