"""The edges that read events: Kafka consumers (predictions, labels), pushed batches (HTTP, replay), files."""
