"""Built-in TOML configurations shipped with riskd (``builtin:NAME`` in paths)."""
