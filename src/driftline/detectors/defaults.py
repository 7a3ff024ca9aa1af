"""Default sketch shapes and limits, apart from the kernels: the CLI's help and the settings need them
without loading Numba."""

DEFAULT_FINE_BINS = 1000
DEFAULT_PSI_BINS = 10
DEFAULT_SEGMENT_VALUES = (
    50  # fairness groups kept per segment attribute: the reference's most frequent values
)
DEFAULT_SEGMENT_ATTRIBUTES = 8  # segment attributes folded per model
SEGMENT_VOCABULARY = 256  # values of each segment attribute a reference keeps, most frequent first
DEFAULT_MIN_SUPPORT = 30  # fairness: the smallest group compared; slices: the smallest judged
DEFAULT_SLICE_VALUES = 10  # slices per `--by` attribute: the reference's most frequent values (+ <other>)


# Report keys -> names of the stored window metrics that dashboards and alert rules read (the
# labels' positive share is not fairness's per-group positive_rate).
PERFORMANCE_METRICS = {
    **{
        k: k for k in ("n_labelled", "accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "log_loss")
    },
    **{k: k for k in ("macro_f1", "micro_f1", "mae", "rmse", "mean_error", "r2", "predicted_positive_rate")},
    "positive_rate": "label_positive_rate",
}
