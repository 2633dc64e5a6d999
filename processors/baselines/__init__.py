"""processors/baselines."""
