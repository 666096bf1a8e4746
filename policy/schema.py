"""The published JSON Schema of a policy file (``zonewarden policy schema``), made from the models."""

from __future__ import annotations

from typing import Any

from policy.model import Policy

SCHEMA_ID = "https://zonewarden.invalid/schema/policy-v1.json"


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a policy file, generated from :class:`policy.model.Policy`."""
    schema = Policy.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "zonewarden zone/conduit policy (IEC 62443-3-2)",
        **{k: v for k, v in schema.items() if k != "title"},
    }
