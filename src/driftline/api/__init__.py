"""HTTP API (FastAPI, ``/v1``): HTTP ingest, read side, references, alerts, silences, /metrics."""
