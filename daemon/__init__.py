"""The riskd process: CLI, config loading, wiring, supervision, calculators."""
