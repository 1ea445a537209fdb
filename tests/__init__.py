"""riskd test suite (a package, so that `tests.*` imports resolve here and not to the
top-level `tests` package pynq 4.0 installs into site-packages)."""
