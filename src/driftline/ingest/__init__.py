"""Reading events into columnar batches: files (Parquet/CSV/NDJSON) now; Kafka consumer next."""
