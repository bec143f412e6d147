"""The website (make site) in a real browser, offline: Debian's chromium driven by Playwright over file:// URLs.

The site is built from the notebooks executed in fast mode (so it stays quick), or, where COURSE_SITE names a
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


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    given = os.environ.get("COURSE_SITE")
    if given:
        return Path(given).resolve()
    executed = tmp_path_factory.mktemp("executed")
    env = dict(os.environ, COURSE_FAST="1", COURSE_OFFLINE="1", COURSE_MODELS=str(executed / "my_models"))
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
            if not (img.get_attribute("alt") or "").strip():
                problems.append(f"{name}: an image without alt text, {img.get_attribute('src')}")
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
    describe_figures(nb)
    alt = nb.cells[1].metadata["mystnb"]["image"]["alt"]
    assert "2.6 Your model against the shipped one" in alt and "64 samples each" in alt
    assert "mystnb" not in nb.cells[2].metadata
