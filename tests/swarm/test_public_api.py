import subprocess
import sys

import swarm


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(swarm).items()
        if not name.startswith("_") and not isinstance(value, type(swarm))
    }
    lazy = {"Client", "AsyncClient"}  # imported on first use: ``import swarm`` stays cheap
    assert set(swarm.__all__) == (public - lazy) | lazy
    assert all(isinstance(getattr(swarm, name), type) for name in lazy)
    assert swarm.__all__ == sorted(swarm.__all__)


def test_importing_swarm_does_not_import_torch_or_vllm() -> None:
    code = "import sys, swarm; print(sorted({'torch', 'vllm', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_kernel_never_imports_the_packages_built_on_it() -> None:
    import ast
    from pathlib import Path

    offenders = []
    for path in Path(swarm.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            offenders += [
                f"{path.name}: {m}"
                for m in modules
                if m.split(".")[0] in ("orchestrator", "specialists")
            ]
    assert offenders == []
