"""Alerting engine: rules -> alert state -> group, inhibit, silence, dedup -> durable outbox -> receivers."""
