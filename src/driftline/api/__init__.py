"""HTTP API (FastAPI): read side, HTTP ingest, /metrics. Built in the service issue; nothing here yet."""
