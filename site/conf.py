"""Sphinx configuration of the course's website (built by ``make site``: ``python -m course_utils site``).

Everything the pages need ships with the site: the book theme's own files and a bundled MathJax, so that the
site builds and reads with no network (a lab room behind a firewall). The notebooks are shown as ``make course``
executed them; nothing is executed here.
"""
project = "Guided diffusion, from noise to a chosen digit"
author = "the course's authors"
copyright = "the course's authors"
extensions = ["myst_nb"]
exclude_patterns = ["README.md", "_build", "downloads/**"]
suppress_warnings = ["myst.header"]          # the README's sections start at level 2

# MyST: $...$ and $$...$$ equations, as in the notebooks
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# myst-nb: show what make course computed, never run anything; no widget script from a CDN
nb_execution_mode = "off"
nb_output_stderr = "remove"                  # progress bars
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/vnd.jupyter.widget-state+json", None)]

# equations: MathJax 3 from the site's own _static folder (copied there by the builder), not from a CDN, with
# its SVG output, whose glyphs are paths inside the one script (web fonts are refused to a page opened from a file)
mathjax_path = "mathjax/tex-svg.js"

html_theme = "sphinx_book_theme"
html_title = "Guided diffusion"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_copy_source = False                     # no second copy of every notebook (the downloads are there)
html_show_sourcelink = False
html_theme_options = {
    "use_download_button": False,
    "use_fullscreen_button": False,
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_context = {"default_mode": "light"}
