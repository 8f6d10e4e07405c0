"""Sphinx configuration of the e3-typed-store documentation."""

from __future__ import annotations

project = "e3-typed-store"
copyright = "the e3-typed-store developers; GPL-3.0-or-later"
author = "e3-typed-store developers"

extensions = ["autoapi.extension", "myst_parser"]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

autoapi_type = "python"
autoapi_dirs = ["../src"]
autoapi_root = "api"
autoapi_add_toctree_entry = False
autoapi_keep_files = False
# Re-exported names (StoreError, CachedResource in backends.base) are part of the
# public pages, as on e3-core's page of the seed module.
autoapi_options = [
    "members",
    "undoc-members",
    "show-inheritance",
    "show-module-summary",
    "imported-members",
    "special-members",
]
autoapi_ignore = ["*/__main__.py"]
autodoc_typehints = "signature"
suppress_warnings = ["autoapi.python_import_resolution"]

myst_heading_anchors = 3
html_theme = "alabaster"
