"""How a slice is named where a model is (stored panes, references, window metrics, alerts):
``churn[region=south]``. Apart from the sketches, so settings and alert rules read it cheaply."""

from __future__ import annotations


def slice_id(model: str, attribute: str, value: str) -> str:
    """The id a slice's sketches and window metrics are stored under: ``churn[region=south]``."""
    return f"{model}[{attribute}={value}]"


def parse_slice_id(model: str) -> tuple[str, str, str] | None:
    """``(model, attribute, value)`` of a slice id; None for a model's own id."""
    if not model.endswith("]") or "[" not in model:
        return None
    parent, _, inner = model[:-1].partition("[")
    attribute, eq, value = inner.partition("=")
    return (parent, attribute, value) if eq and parent else None
