"""The course's web site: ``tinyres lessons --site DIR`` (Sphinx + MyST-NB, ``pip install -e ".[docs]"``).

The pages are the notebooks ``tinyres lessons --execute`` makes, outputs and figures
included (one lesson -> notebook conversion for the notebooks, CI and the site), plus the
README, the architecture doc, the lessons' and the exercises' READMEs, and an API
reference from the docstrings. Nothing is executed by Sphinx, and nothing is fetched:
MathJax comes from a Python package (``django-static-mathjax``, MathJax 3 as published,
with no dependencies) and is served from the site's own ``_static/``.

The source tree Sphinx reads is staged in a temporary folder with the repository's layout
(``README.md``, ``docs/``, ``lessons/``), so the Markdown's relative links keep working;
links to a lesson's ``.md`` are pointed at its notebook, links to source files become
downloads, and links to folders, which a static site cannot show, become plain text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "docs" / "site"
# Markdown links and images with a local target: [text](target) / ![alt](target).
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
API_MODULES = ["tinyres", "tinyres.engine", "tinyres.autograd", "tinyres.gradcheck", "tinyres.nn",
               "tinyres.nn.functional", "tinyres.nn.init", "tinyres.models", "tinyres.optim",
               "tinyres.data", "tinyres.training", "tinyres.viz", "tinyres.kernels",
               "tinyres.demos.vanishing", "tinyres.demos.playground"]
PAGES = ["README.md", "docs/architecture.md", "benchmarks/README.md", "lessons/README.md",
         "lessons/exercises/README.md"]


def _fix_links(text: str, page: Path, stage: Path, repo: Path) -> str:
    """The links of one staged page (at ``page``), made to work on the site."""

    def fix(match: re.Match) -> str:
        bang, label, target = match.groups()
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        path, _, anchor = target.partition("#")
        staged = (page.parent / path).resolve()
        if staged.suffix == ".md" and staged.with_suffix(".ipynb").exists():
            notebook = Path(path).with_suffix(".ipynb").as_posix()
            return f"{bang}[{label}]({notebook}{'#' + anchor if anchor else ''})"
        if staged.exists():
            return match.group(0)
        original = repo / staged.relative_to(stage)
        if original.is_file():  # a source file: the site offers it as a download
            staged.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(original, staged)
            return match.group(0)
        return label  # a folder or a missing file: the words stay, the link goes

    return LINK.sub(fix, text)


def _favicon(path: Path) -> None:
    """The browser asks every site for an icon; without one its console logs a failed load."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(0.32, 0.32), dpi=100)
    fig.text(0.5, 0.5, "tr", ha="center", va="center", fontsize=14, weight="bold", color="tab:orange")
    fig.savefig(path, transparent=True)


def _playground_html(choices, folder: str) -> str:
    """Selectors over the precomputed pictures of ``playground.grid`` (no kernel, no CDN)."""
    from tinyres.demos.playground import GRID

    def option(name: str, value) -> str:  # booleans as "true"/"false", which the script compares
        label = ("on" if value else "off") if name == "residual" else value
        return f'<option value="{str(value).lower()}">{label}</option>'

    selects = "".join(
        f'<label>{name} <select data-part="{name}">' + "".join(option(name, v) for v in values)
        + "</select></label> " for name, values in GRID.items())
    first = choices[0].stem()
    return f"""<div class="tinyres-playground">
<p>{selects}</p>
<img src="{folder}/{first}.png" alt="per-block gradient norms" style="max-width: 60%; vertical-align: top">
<pre style="display: inline-block; vertical-align: top; font-size: 0.8em"></pre>
<script>
(function () {{
  const box = document.currentScript.parentElement;
  const img = box.querySelector("img"), pre = box.querySelector("pre");
  function stem() {{
    const v = {{}};
    box.querySelectorAll("select").forEach(s => v[s.dataset.part] = s.value);
    const kind = v.residual === "true" ? "residual" : "plain";
    return `d${{v.depth}}-${{v.activation}}-${{v.init}}-${{v.norm}}-${{kind}}`;
  }}
  function show() {{
    img.src = "{folder}/" + stem() + ".png";
    fetch("{folder}/" + stem() + ".txt").then(r => r.text()).then(t => pre.textContent = t).catch(() => {{}});
  }}
  box.querySelectorAll("select").forEach(s => s.addEventListener("change", show));
  show();
}})();
</script>
</div>"""


def _lesson_notebook(path: Path, notebooks: Path, playground: str | None):
    """The executed notebook of one lesson, for the site (playground widgets replaced by pictures)."""
    import nbformat

    source = notebooks / f"{path.stem}.ipynb"
    if not source.exists():
        raise FileNotFoundError(f"no executed notebook for {path.name} in {notebooks}")
    notebook = nbformat.read(source, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    if not any(c.outputs for c in code):
        raise ValueError(f"{source} has no outputs: run `tinyres lessons --execute` first")
    notebook.metadata.pop("widgets", None)
    for cell in code:
        if "playground()" in cell.source and playground is not None:
            cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": playground})]
    return notebook


def build(repo: Path, out: Path, notebooks: Path, lessons: list[Path]) -> float:
    """Stage the pages and run Sphinx; the build's seconds. Raises on any failure."""
    import mathjax  # django-static-mathjax: MathJax's published files
    import nbformat

    from tinyres.demos.playground import grid

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "src"
        stage.mkdir()
        shutil.copy2(CONF / "conf.py", stage / "conf.py")
        static = stage / "_static"
        shutil.copytree(CONF / "_static", static)
        es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
        (static / "mathjax").mkdir()
        for part in ["tex-chtml-full.js", "output/chtml/fonts/woff-v2", "a11y", "ui", "input/tex/extensions"]:
            copy = shutil.copytree if (es5 / part).is_dir() else shutil.copy2
            copy(es5 / part, static / "mathjax" / part)
        drawn = time.perf_counter()
        choices = grid(static / "playground")
        print(f"playground pictures: {len(choices)} in {time.perf_counter() - drawn:.0f} s", flush=True)
        playground = _playground_html(choices, "../_static/playground")

        for page in PAGES:
            (stage / page).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / page, stage / page)
        for folder in ["lessons/figures", "docs/figures"]:
            if (repo / folder).is_dir():
                shutil.copytree(repo / folder, stage / folder, dirs_exist_ok=True)
        for path in lessons:
            notebook = _lesson_notebook(path, notebooks, playground)
            nbformat.write(notebook, stage / "lessons" / f"{path.stem}.ipynb")

        for page in PAGES:
            staged = stage / page
            staged.write_text(_fix_links(staged.read_text(), staged, stage, repo))
        for path in lessons:
            staged = stage / "lessons" / f"{path.stem}.ipynb"
            notebook = nbformat.read(staged, as_version=4)
            for cell in notebook.cells:
                if cell.cell_type == "markdown":
                    cell.source = _fix_links(cell.source, staged, stage, repo)
            nbformat.write(notebook, staged)

        lesson_docs = "\n".join(f"lessons/{p.stem}" for p in lessons)
        (stage / "index.md").write_text(f"""# tinyres: residual networks from scratch

The course, one page per lesson with its outputs, the library's README and architecture,
and the API reference from the docstrings.

```{{toctree}}
:caption: The course
:maxdepth: 1

lessons/README
{lesson_docs}
lessons/exercises/README
```

```{{toctree}}
:caption: The library
:maxdepth: 1

README
docs/architecture
benchmarks/README
api
```
""")
        # reStructuredText: autodoc's output is parsed in the page's language, and the docstrings are rST.
        modules = "\n".join(f".. automodule:: {m}\n   :members:\n" for m in API_MODULES)
        (stage / "api.rst").write_text(f"API reference\n=============\n\nFrom the docstrings.\n\n{modules}")
        _favicon(static / "favicon.png")

        command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "auto", str(stage), str(out)]
        sphinx_start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        print(f"sphinx-build: {time.perf_counter() - sphinx_start:.0f} s", flush=True)
        warnings = [line for line in done.stderr.splitlines() if line.strip()]
        (out / "build-warnings.txt").parent.mkdir(parents=True, exist_ok=True)
        (out / "build-warnings.txt").write_text("\n".join(warnings) + "\n")
        if done.returncode != 0:
            raise RuntimeError(f"sphinx-build failed: {(warnings or ['no message'])[-1]}")
    (out / "site.json").write_text(json.dumps({"lessons": [p.stem for p in lessons]}))
    return time.perf_counter() - start
