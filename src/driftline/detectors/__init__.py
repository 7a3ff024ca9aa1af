"""Pure statistics: mergeable Numba sketches and the drift, latency, fairness and performance metrics.

No I/O here: only numpy, numba and scipy. See DESIGN.md "Sketches" and the module docstrings:
``numeric`` (fine quantile bins), ``categorical`` (top-K counts), ``latency`` (log buckets),
``fairness`` (outcome counts per group), ``performance`` (model quality: score histograms and
confusion counts, regression error sums), ``stats`` (PSI, KS, JS, Wasserstein, chi-square, BH),
``windows`` (panes and watermarks), ``profile`` (a model's sketches and the drift report).
"""
