"""Model registrations (``PUT /v1/models/{id}``), one JSON config per model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from driftline.storage.store import Store


class ModelStore:
    """Model registrations (``models`` table)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, model_id: str, config: dict[str, Any]) -> None:
        row = [model_id, orjson.dumps(config).decode(), datetime.now(UTC)]
        self.store._insert("models", [row], ("model_id", "config", "updated_at"))

    def all(self) -> dict[str, dict[str, Any]]:
        rows = self.store._query(
            f"SELECT model_id, config FROM {self.store.database}.models FINAL ORDER BY model_id"
        )
        return {m: orjson.loads(c) for m, c in rows}
