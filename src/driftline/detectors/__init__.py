"""Pure statistics: mergeable Numba sketches and the drift, latency and fairness metrics on them.

No I/O here: only numpy, numba and scipy. See DESIGN.md "Sketches" and the module docstrings:
``numeric`` (fine quantile bins), ``categorical`` (top-K counts), ``latency`` (log buckets),
``fairness`` (outcome counts per group), ``stats`` (PSI, KS, JS, Wasserstein, chi-square, BH),
``windows`` (panes and watermarks), ``profile`` (a model's sketches and the drift report).
"""
