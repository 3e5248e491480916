"""JSON Schema export of the wire contract, so producers in any language can validate.

The schema is generated from the models and their field types (schemas/fields.py, schemas/models.py),
never written by hand beside them, and it must refuse what the router refuses (issue 17): a producer
that validates against ``Signal.schema.json`` is never dead-lettered for a reason the schema could
express. What it cannot express is the router's alone: an asset class the ExchangeMapper cannot infer
from the symbol, and a BRACKET's price order (stop < entry < take-profit for a BUY), which compares
two fields. tests/unit/test_schema_parity.py holds the schema and the router to the same verdicts.

Dialect: JSON Schema 2020-12 (``$schema``), regexes in the ECMA-262 subset that Python's ``re`` reads
the same way. ``ts`` is ``format: date-time`` *and* a pattern, because validators treat ``format`` as
an annotation unless told to assert it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema

from schemas.models import DeadLetter, Fill, NavQuote, Order, OrderEvent, OrderRequest, Position, Signal

WIRE_MODELS: tuple[type[BaseModel], ...] = (
    Signal, OrderRequest, Order, OrderEvent, Fill, Position, NavQuote, DeadLetter,
)
SCHEMA_BASE_URL = "https://superintel.example/schemas/"


class WireJsonSchema(GenerateJsonSchema):
    """Pydantic's generator, with the ``$schema`` dialect named and every pattern's end anchor made
    to mean the end of the string in every regex engine.

    In ECMA-262 (the dialect JSON Schema names) ``$`` matches only at the end of the string; in
    Python's ``re`` (the ``jsonschema`` package) it also matches before a final newline, so
    ``"sig-1\\n"`` would pass ``^[A-Za-z0-9._:/\\-]+$`` there while the router refuses it. A final
    ``$`` becomes ``(?!\\n)$``: the same language in ECMA-262, the intended one in Python."""

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> JsonSchemaValue:
        generated = super().generate(schema, mode=mode)
        return {"$schema": self.schema_dialect, **_anchored(generated)}


def _anchored(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: (_end_anchor(value) if key == "pattern" and isinstance(value, str) else _anchored(value))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_anchored(item) for item in node]
    return node


def _end_anchor(pattern: str) -> str:
    body = pattern[:-1]
    escaped = len(body) - len(body.rstrip("\\"))  # an odd number of backslashes escapes the $
    if pattern.endswith("$") and escaped % 2 == 0 and not body.endswith("(?!\\n)"):
        return body + "(?!\\n)$"
    return pattern


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a wire model in validation mode (what a producer may send)."""
    schema = model.model_json_schema(mode="validation", schema_generator=WireJsonSchema)
    schema["$id"] = f"{SCHEMA_BASE_URL}{model.__name__}.schema.json"
    return schema


def write_json_schemas(out: Path) -> list[Path]:
    """Write ``<Model>.schema.json`` for every wire model and return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for model in WIRE_MODELS:
        path = out / f"{model.__name__}.schema.json"
        path.write_text(json.dumps(json_schema(model), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
