"""The A2A agent card (``/.well-known/agent-card.json``): how other agents discover the swarm.

Each ready specialist is a skill, with the media types its input and output take; the card
names the bearer scheme when the API has keys. It is built from the catalog on each request, so
it follows the registry as specialists come and go. Tasks are submitted over swarm's own HTTP
API (``POST /v1/tasks``, server-sent events for progress); the card says so in its
``preferredTransport`` and ``documentationUrl``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from swarm.catalog import SpecialistRecord

PROTOCOL_VERSION = "0.3.0"
TEXT_INPUT = {"text"}


def _version() -> str:
    try:
        return version("swarm-runtime")
    except PackageNotFoundError:
        return "0.0.0"


def skill(record: SpecialistRecord) -> dict[str, Any]:
    """A ready specialist as an A2A skill."""
    properties = set((record.input_schema.get("properties") or {}).keys())
    text_only = properties == TEXT_INPUT
    few_shot = record.manifest.few_shot if record.manifest else []
    keywords = record.manifest.keywords if record.manifest else []
    examples = [
        str(example.input.get("text")) if text_only else str(example.input) for example in few_shot
    ]
    return {
        "id": record.name,
        "name": record.name,
        "description": record.description or record.name,
        "tags": list(keywords) or [record.name],
        "examples": examples[:3],
        "inputModes": ["text/plain", "application/json"] if text_only else ["application/json"],
        "outputModes": ["application/json"],
    }


def agent_card(
    records: dict[str, SpecialistRecord], base_url: str, *, secured: bool
) -> dict[str, Any]:
    """The card for the specialists ready now, served from ``base_url``."""
    base = base_url.rstrip("/")
    card: dict[str, Any] = {
        "protocolVersion": PROTOCOL_VERSION,
        "name": "swarm",
        "description": (
            "Small distilled specialist models behind one API: submit a task with a plan of "
            "specialists (POST /v1/tasks) and follow it over server-sent events."
        ),
        "url": f"{base}/v1",
        "preferredTransport": "HTTP+JSON",
        "version": _version(),
        "documentationUrl": f"{base}/docs",
        "capabilities": {"streaming": True, "pushNotifications": False},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": [skill(r) for _name, r in sorted(records.items()) if r.ready],
    }
    if secured:
        card["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "An API key."}
        }
        card["security"] = [{"bearer": []}]
    return card
