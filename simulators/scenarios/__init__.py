"""Scenario files (TOML) shipped with the simulators."""
