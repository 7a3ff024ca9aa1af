"""Grafana dashboards, Prometheus config and the docker-compose stack (see README.md here)."""
