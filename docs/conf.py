"""Sphinx configuration for the ensemble-agg documentation."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import ensemble_agg  # noqa: E402

project = "ensemble-agg"
author = "the ensemble-agg developers"
copyright = "2026, the ensemble-agg developers"
release = ensemble_agg.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "numpydoc",
    "cli_reference",
    "bench_figures",
]

# numpydoc renders the docstrings; class members are listed by autodoc.
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"

# The pages' >>> examples run under `sphinx-build -b doctest`.
doctest_global_setup = "import numpy as np"
doctest_test_doctest_blocks = "default"

# furo: a content column wide enough for 88-column code at 1280 px, and
# tables that scroll instead of wrapping cells (.ci/run checks the code blocks).
html_theme = "furo"
html_title = f"ensemble-agg {release}"
html_static_path = ["_static"]
html_css_files = ["output.css"]
exclude_patterns = ["_build"]
# Option names like --model-ids must not become en dashes.
smartquotes = False
