"""The orchestrator package's public surface, and the direction of its imports."""

from __future__ import annotations

import ast
from pathlib import Path

import orchestrator


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(orchestrator).items()
        if not name.startswith("_") and not isinstance(value, type(orchestrator))
    }
    assert set(orchestrator.__all__) == public
    assert orchestrator.__all__ == sorted(orchestrator.__all__)


def test_the_orchestrator_never_imports_the_specialists_package() -> None:
    offenders = []
    for path in Path(orchestrator.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {m}" for m in modules if m.split(".")[0] == "specialists"]
    assert offenders == []
