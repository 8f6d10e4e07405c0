"""An example third-party store driver for e3-typed-store."""
