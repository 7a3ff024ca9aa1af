"""Default sketch shapes, apart from the kernels: the CLI's help needs them without loading Numba."""

DEFAULT_FINE_BINS = 1000
DEFAULT_PSI_BINS = 10
