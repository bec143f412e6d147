"""The website (make site) in a real browser, offline: Debian's chromium driven by Playwright over file:// URLs.

The site is built from the notebooks executed in fast mode (so it stays quick): nbval's runs of them in the same
session (conftest.py keeps them and runs these tests last), or, alone, a fresh run; or, where COURSE_SITE names a
built site (.ci/run: the one built from the learner-mode run), that one is checked. Every request that is not
for a file of the site is refused and reported. Saves build/screenshots/site-*.png.
"""
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from test_browser import CHROMIUM, LAUNCH_ARGS, require_browser

from course_utils.plotting import UNTITLED

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "build" / "screenshots"
MAX_MB = 20

RAW_MATH = r"""() => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest("pre, code, script, style, textarea, mjx-container"))
      continue;
    const t = n.textContent;
    if (/\\\(|\\\[|\$\$|\$[^$\s][^$]*\\[a-zA-Z]+[^$]*\$/.test(t)) raw.push(t.trim().slice(0, 100));
  }
  return raw;
}"""
MATHJAX_DONE = """async () => {
  if (!document.querySelector('.math')) return true;
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return false;
  await MathJax.startup.promise;
  return true;
}"""
TARGETS = """() => [...document.querySelectorAll('a[href], img[src], link[href], script[src]')]
  .map(e => e.href || e.src)"""


def write_nbval_runs(runs: dict, out: Path) -> bool:
    """Write this session's nbval runs of the solution notebooks (kept by conftest.py, cell by cell) as the
    executed copies ``make course`` writes (out/notebooks, timings.json, run.json); False, writing nothing,
    unless nbval ran every code cell of every notebook and each one passed."""
    import copy

    import nbformat

    from course_utils.notebooks import sources, write_run_facts

    names = [py.stem for py in sources()]
    if any(name not in runs or runs[name]["failed"] for name in names):
        return False
    executed, rows = {}, []
    for name in names:
        nb = copy.deepcopy(runs[name]["notebook"])
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        if set(runs[name]["outputs"]) != set(range(len(code))):
            return False
        for i, cell in enumerate(code):
            cell.outputs = [nbformat.from_dict(output) for output in runs[name]["outputs"][i]]
        figures = sum("image/png" in o.get("data", {}) for cell in code for o in cell.outputs)
        executed[name] = nb
        rows.append({"notebook": name, "seconds": round(runs[name]["seconds"], 1), "figures": figures})
    for name, nb in executed.items():
        (out / "notebooks").mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / "notebooks" / f"{name}.ipynb")
    write_run_facts(out, rows)
    return True


@pytest.fixture(scope="module")
def site(request, tmp_path_factory):
    given = os.environ.get("COURSE_SITE")
    if given:
        return Path(given).resolve()
    executed = tmp_path_factory.mktemp("executed")
    env = dict(os.environ, COURSE_FAST="1", COURSE_OFFLINE="1", COURSE_MODELS=str(executed / "my_models"))
    # nbval has run the notebooks in this session (conftest.py orders these tests last); alone, run them here
    if write_nbval_runs(getattr(request.config, "course_notebook_runs", {}), executed):
        print("the site is built from nbval's runs of the notebooks in this session")
    else:
        subprocess.run([sys.executable, "-m", "course_utils", "course", "--out", str(executed)], env=env, cwd=ROOT,
                       check=True)
    out = executed.parent / "site"
    subprocess.run([sys.executable, "-m", "course_utils", "site", "--executed", str(executed), "--out", str(out),
                    "--cache", str(ROOT / "build" / "explorer-cache")], env=env, cwd=ROOT, check=True)
    return out


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def open_offline(browser, refused: list):
    """A page on which every request for anything but a local file is refused (and noted in ``refused``)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def only_files(route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            return route.continue_()
        refused.append(url)
        return route.abort()

    context.route("**/*", only_files)
    return context.new_page()


def local_file(url: str) -> Path | None:
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def test_the_site_holds_every_page_and_is_small(site):
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html") if "_static" not in p.parts}
    notebooks = {f"notebooks/{p.stem}.html" for p in (ROOT / "solutions").glob("0*.py")}
    expected = {f"{page.stem}.html" for page in (ROOT / "site").glob("*.md")}   # index, getting started, ...
    assert expected | notebooks <= pages, sorted(expected | notebooks - pages)
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) / 1e6
    print(f"the site: {size:.1f} MB in {sum(1 for _ in site.rglob('*'))} files")
    assert size < MAX_MB


def test_the_readme_is_short_and_points_to_every_page_of_the_site():
    """The README keeps what a newcomer needs first; the long sections are pages of site/, each linked from it."""
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\((site/[^)#]+\.md)\)", readme))
    assert all((ROOT / link).is_file() for link in linked), sorted(linked)
    pages = {f"site/{p.name}" for p in (ROOT / "site").glob("*.md")}
    assert pages - linked == {"site/index.md", "site/getting-started.md", "site/notebooks.md"}   # the README's own text
    print(f"README: {len(readme):,} characters")
    assert len(readme) < 12_000


def test_each_notebook_page_offers_both_notebooks_and_says_how_it_ran(site):
    html = (site / "notebooks" / "03_ddpm_eps.html").read_text()
    links = re.findall(r'href="([^"]*03_ddpm_eps\.ipynb)"', html)
    assert len(links) == 2, links
    for link in links:
        assert (site / "notebooks" / unquote(link)).resolve().is_file(), link
    assert "this notebook took" in html and "It trains your" in html


def test_every_page_loads_offline_renders_its_equations_and_describes_its_images(site, browser):
    problems, refused = [], []
    page = open_offline(browser, refused)
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    pages = sorted(p for p in site.rglob("*.html") if "_static" not in p.parts)   # (the theme's macro files)
    for path in pages:
        errors.clear()
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        page.wait_for_function(MATHJAX_DONE, timeout=30_000)
        name = path.relative_to(site).as_posix()
        problems += [f"{name}: console error {e}" for e in errors]
        problems += [f"{name}: raw math {t!r}" for t in page.evaluate(RAW_MATH)]
        for url in page.evaluate(TARGETS):
            target = local_file(url)
            if target is not None and not (target.is_file() or (target / "index.html").is_file()):
                problems.append(f"{name}: broken link or image {url}")
        for img in page.locator("img").all():
            alt = (img.get_attribute("alt") or "").strip()
            if not alt:
                problems.append(f"{name}: an image without alt text, {img.get_attribute('src')}")
            elif name.startswith("notebooks/") and (alt.startswith("Figure for '") or UNTITLED in alt):
                problems.append(f"{name}: a figure with no title or panel titles of its own ({alt})")
        if name in ("index.html", "notebooks/03_ddpm_eps.html"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot = "site-home.png" if name == "index.html" else "site-notebook.png"
            page.screenshot(path=str(SCREENSHOTS / shot), full_page=False)
    rendered = (site / "notebooks" / "01_forward_noising.html")
    page.goto(rendered.as_uri())
    page.wait_for_function(MATHJAX_DONE, timeout=30_000)
    typeset, equations = page.locator("mjx-container").count(), page.locator(".math").count()
    assert typeset == equations > 5, (typeset, equations)     # every equation went through MathJax
    problems += [f"a request outside the site: {u}" for u in refused]
    print(f"{len(pages)} pages checked")
    assert not problems, "\n".join(problems[:40])


def _shown(page):
    return page.get_attribute("#explorer-grid", "src"), page.inner_text("#explorer-stats")


def test_on_the_explorer_page_moving_the_scale_changes_the_grid_and_the_accuracy(site, browser):
    refused = []
    page = open_offline(browser, refused)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((site / "explorer.html").as_uri())
    page.select_option("#explorer-method", "classifier-ddim")
    before = _shown(page)
    assert "s = 1:" in before[1] and "accuracy" in before[1]
    page.focus("#explorer-scale")
    page.keyboard.press("ArrowLeft")             # from s = 1 to s = 0: unguided, any digit
    after = _shown(page)
    accuracy = [re.search(r"accuracy (\d+)%", text).group(1) for text in (before[1], after[1])]
    assert "s = 0:" in after[1] and after[0] != before[0] and accuracy[0] != accuracy[1], (before, after)
    for src in (before[0], after[0]):
        assert (site / src).is_file(), src
    assert page.evaluate("() => document.getElementById('explorer-grid').naturalWidth") > 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "site-explorer.png"), full_page=True)
    assert not errors and not refused, (errors, refused)


def test_the_site_asks_for_make_course_first(tmp_path):
    from course_utils.site import run_facts

    with pytest.raises(FileNotFoundError, match="make course"):
        run_facts(tmp_path)


def test_every_figure_gets_an_alt_text_from_its_section_and_its_cell():
    import nbformat

    from course_utils.site import describe_figures

    nb = nbformat.v4.new_notebook()
    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    nb.cells = [nbformat.v4.new_markdown_cell("## 2.6 Your model against the shipped one"),
                nbformat.v4.new_code_cell("# both models, 64 samples each\nplt.show()", outputs=[figure]),
                nbformat.v4.new_code_cell("print(1)", outputs=[])]
    described = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"},
                                       metadata={"image/png": {"alt": "yours and the shipped, 64 samples each"}})
    nb.cells.append(nbformat.v4.new_code_cell("plt.show()", outputs=[described, described]))
    describe_figures(nb)
    alt = nb.cells[1].metadata["mystnb"]["image"]["alt"]
    assert "2.6 Your model against the shipped one" in alt and "64 samples each" in alt
    assert "mystnb" not in nb.cells[2].metadata
    own = nb.cells[3].metadata["mystnb"]["image"]["alt"]
    assert own == "yours and the shipped, 64 samples each (from the section '2.6 Your model against the shipped one')"


def test_a_figure_shown_in_a_notebook_carries_its_own_alt_text():
    """The kernel hook of course_utils (plotting.describe_figures_in_notebooks) writes each figure's title and
    panels into its output's metadata, where nbconvert, nbgrader and the site read it."""
    import nbformat
    from nbclient import NotebookClient

    import course_utils as cu

    fig, ax = plt_figure()
    assert cu.describe_figure(fig) == "two curves. Panels: a, loss against step; b"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import course_utils as cu\nimport matplotlib.pyplot as plt"),
                nbformat.v4.new_code_cell("fig, ax = plt.subplots(1, 2); fig.suptitle('two curves')\n"
                                          "ax[0].set_title('a'); ax[0].set_xlabel('step'); ax[0].set_ylabel('loss')\n"
                                          "ax[1].set_title('b'); plt.show()"),
                nbformat.v4.new_code_cell("plt.plot([1, 2]); plt.show()")]   # no words: said, so it can be found
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    metadata = [out.get("metadata", {}) for cell in nb.cells[1:] for out in cell.outputs if "image/png" in out.data]
    assert metadata == [{"image/png": {"alt": "two curves. Panels: a, loss against step; b"}},
                        {"image/png": {"alt": f"{UNTITLED} with 1 panel(s) and no words"}}], metadata


def plt_figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2)
    fig.suptitle("two curves")
    ax[0].set_title("a"), ax[0].set_xlabel("step"), ax[0].set_ylabel("loss"), ax[1].set_title("b")
    return fig, ax
