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


def _read_type_checking_reexports() -> None:
    """Have autoapi read the re-exports a module makes under ``if TYPE_CHECKING:``.

    The package imports its plugin loader when ``load_store`` and the like are
    first asked for (PEP 562, see ``e3_typed_store.__getattr__``), so it
    re-exports them for type checkers only. autoapi reads the imports at the
    top level of a module and skips ``if`` blocks: without this, the package
    page would lose them. Only the explicit ``from e3_typed_store.x import Name
    as Name`` form is read, as type checkers do in stubs.
    """
    import astroid
    from autoapi import _astroid_utils
    from autoapi._parser import Parser

    def parse_if(self: Parser, node: astroid.nodes.If) -> list[dict[str, object]]:
        test = node.test
        if not (
            isinstance(node.parent, astroid.nodes.Module)
            and isinstance(test, astroid.nodes.Name)
            and test.name == "TYPE_CHECKING"
        ):
            return generic_parse(self, node)
        package = node.root().name.split(".", 1)[0]
        found: list[dict[str, object]] = []
        for child in node.body:
            if _astroid_utils.is_local_import_from(child, package) and all(
                alias == name for name, alias in child.names
            ):
                found.extend(self._parse_local_import_from(child))
        return found

    def generic_parse(self: Parser, node: astroid.nodes.If) -> list[dict[str, object]]:
        # What autoapi does with any node it has no parse_<node> method for.
        data: list[dict[str, object]] = []
        for child in node.get_children():
            data = self.parse(child)
            if data:
                break
        return data

    if hasattr(Parser, "parse_if"):
        raise RuntimeError("autoapi reads if blocks now: drop this hook from conf.py")
    Parser.parse_if = parse_if


_read_type_checking_reexports()
