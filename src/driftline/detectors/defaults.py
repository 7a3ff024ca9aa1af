"""Default sketch shapes and limits, apart from the kernels: the CLI's help and the settings need them
without loading Numba."""

DEFAULT_FINE_BINS = 1000
DEFAULT_PSI_BINS = 10
DEFAULT_SEGMENT_VALUES = (
    50  # fairness groups kept per segment attribute: the reference's most frequent values
)
DEFAULT_SEGMENT_ATTRIBUTES = 8  # segment attributes folded per model
SEGMENT_VOCABULARY = 256  # values of each segment attribute a reference keeps, most frequent first
DEFAULT_MIN_SUPPORT = 30  # fairness: the smallest group compared
