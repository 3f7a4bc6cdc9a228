import subprocess
import sys

import swarm


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(swarm).items()
        if not name.startswith("_") and not isinstance(value, type(swarm))
    }
    assert set(swarm.__all__) == public
    assert swarm.__all__ == sorted(swarm.__all__)


def test_importing_swarm_does_not_import_torch_or_vllm() -> None:
    code = "import sys, swarm; print(sorted({'torch', 'vllm', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
