"""JSON Schema export of the wire contract, so producers in any language can validate."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.models import DeadLetter, Fill, NavQuote, Order, OrderEvent, OrderRequest, Position, Signal

WIRE_MODELS: tuple[type[BaseModel], ...] = (
    Signal, OrderRequest, Order, OrderEvent, Fill, Position, NavQuote, DeadLetter,
)


def write_json_schemas(out: Path) -> list[Path]:
    """Write ``<Model>.schema.json`` for every wire model (validation mode: what a producer
    may send) and return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for model in WIRE_MODELS:
        path = out / f"{model.__name__}.schema.json"
        schema = model.model_json_schema(mode="validation")
        schema["$id"] = f"https://superintel.example/schemas/{model.__name__}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
