"""The e3-typed-store benchmark: ``python -m bench`` (see docs/performance.md).

Everything here measures; nothing here is part of the package. The library
code under test is imported as users import it.
"""
