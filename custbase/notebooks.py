"""Execute the project's notebooks headless: ``custbase notebooks`` (``make notebooks``) and the notebook tests.

Each notebook is a jupytext pair under ``notebooks/``: the percent-format ``.py`` (reviewed in git) and the
``.ipynb`` (opened in Jupyter). The runner reads the ``.py``, executes it with nbclient in a fresh kernel
(working directory: the notebook's folder), and writes the executed notebook, outputs and inline figures
included, to ``<out>/<name>.ipynb`` and as HTML to ``<out>/<name>.html``. Notebooks find their data through ``CUSTBASE_DATA`` (set here), so they run
from any working directory.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

#: Environment variables naming the data folder (laid out like the demo's) and the project folder (custbase.yaml,
#: mlruns/) the notebooks read; the runner sets both.
DATA_ENV = "CUSTBASE_DATA"
PROJECT_ENV = "CUSTBASE_PROJECT"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = PACKAGE_ROOT / "notebooks"


def project_dir() -> Path:
    """The project folder: ``CUSTBASE_PROJECT``, else the folder holding the custbase package."""
    return Path(os.environ.get(PROJECT_ENV) or PACKAGE_ROOT).resolve()


def data_dir(default: str = "data") -> Path:
    """The data folder of a notebook: ``CUSTBASE_DATA``, else ``default`` under the project folder."""
    return Path(os.environ.get(DATA_ENV) or project_dir() / default).resolve()


def project_config():
    """The project's configuration with its relative paths resolved against :func:`project_dir`, not the working
    directory (a notebook's working directory is wherever Jupyter was started)."""
    from custbase.config import load_config

    root = project_dir()
    config = load_config(root / "custbase.yaml" if (root / "custbase.yaml").exists() else None)
    paths = {k: (v if v is None or Path(v).is_absolute() else root / v) for k, v in config.paths.model_dump().items()}
    return config.model_copy(update={"paths": config.paths.model_copy(update=paths)})


@dataclass(frozen=True)
class NotebookRun:
    name: str
    path: Path
    seconds: float
    cells: int
    images: int


def notebook_sources(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The percent-format ``.py`` notebooks of ``folder``, in name order."""
    return sorted(p for p in Path(folder).glob("*.py") if p.read_text().lstrip().startswith("# ---"))


def execute_notebook(source: Path, out_dir: Path, *, data: Path, timeout: int = 900) -> NotebookRun:
    """Execute one paired notebook and write it with its outputs to ``out_dir``; raise on the first failing cell."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    source = Path(source).resolve()
    notebook = jupytext.read(source)
    started = time.perf_counter()
    previous = {k: os.environ.get(k) for k in (DATA_ENV, PROJECT_ENV)}
    # the kernel inherits this process's environment; the project is CUSTBASE_PROJECT or where the runner was started
    os.environ.update({DATA_ENV: str(Path(data).resolve()), PROJECT_ENV: str(Path(previous[PROJECT_ENV] or Path.cwd()).resolve())})
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(source.parent)}}).execute()
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{source.stem}.ipynb"
    nbformat.write(notebook, target)
    write_notebook_html(notebook, target.with_suffix(".html"))
    images = sum(1 for cell in notebook.cells for output in cell.get("outputs", []) if "image/png" in output.get("data", {}))
    return NotebookRun(source.stem, target, time.perf_counter() - started, len(notebook.cells), images)


def write_notebook_html(notebook, path: Path) -> Path:
    """The executed notebook as one HTML page (nbconvert's lab template; figures embedded as base64 PNGs)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    Path(path).write_text(body, encoding="utf-8")
    return Path(path)


def run_notebooks(data: Path, out_dir: Path, folder: Path = NOTEBOOKS_DIR) -> list[NotebookRun]:
    """Execute every notebook of ``folder`` on ``data``; executed copies go to ``out_dir``."""
    sources = notebook_sources(folder)
    if not sources:
        raise FileNotFoundError(f"no percent-format notebooks (.py with a jupytext header) in {folder}")
    if not Path(data).exists():
        raise FileNotFoundError(f"data folder {data} does not exist: run `make demo` first")
    return [execute_notebook(s, out_dir, data=data) for s in sources]
