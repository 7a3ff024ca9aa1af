"""driftline: real-time model monitoring and drift detection."""

__version__ = "0.1.0"
