"""processors/kernels."""
