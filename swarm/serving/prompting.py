"""How a specialist's manifest and one input become the chat a model sees.

The worker serves with this and the distillation pipeline trains and evaluates with it, so a
student is always trained on exactly the prompt it will be served with.
"""

from __future__ import annotations

import json
from typing import Any

from swarm.manifest import Manifest


def render_messages(manifest: Manifest, step_input: dict[str, Any]) -> list[dict[str, str]]:
    """System prompt, few-shot turns, then the input as JSON: the chat the model sees."""
    messages = [{"role": "system", "content": manifest.system_prompt}]
    for example in manifest.few_shot:
        messages.append({"role": "user", "content": json.dumps(example.input)})
        messages.append({"role": "assistant", "content": json.dumps(example.output)})
    messages.append({"role": "user", "content": json.dumps(step_input, ensure_ascii=False)})
    return messages
