"""Alerting engine: rules, state, notification pipeline and receivers. Built in the alerting issue; nothing here yet."""
