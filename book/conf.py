"""Sphinx's configuration for the course site; book/build.py copies it into the build's source.

The notebooks come in as the test suite executed them: MyST-NB renders their saved outputs
(plots, tables) and runs nothing.
"""

project = "Microservice Patterns Lab"
author = "Microservice Patterns Lab"
extensions = ["myst_nb"]

nb_execution_mode = "off"  # the outputs are the suite's (tests/output/<stem>-default.ipynb)
nb_merge_streams = True  # a cell's prints as one block, as JupyterLab shows them
myst_heading_anchors = 3  # headings get #anchors: a page can link to a section ([..](#slug))
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
# a notebook's sections start at `##` under its `#` title, and the suite's copies carry
# papermill's metadata: nothing a reader would miss. The learning path's graph is a mermaid
# block (GitHub and JupyterLab draw it); here it shows as its text, beside the same table:
# drawing it would load mermaid's script from the web
suppress_warnings = ["myst.header", "misc.highlighting_failure"]

html_theme = "sphinx_book_theme"
html_title = project
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,  # the .ipynb as the suite executed it
    "home_page_in_toc": True,
}
