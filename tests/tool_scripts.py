"""Import a script of ``tools/`` as a module (``tools/`` is not a package)."""

import importlib.util
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"


def load_tool(name: str):
    """A freshly executed module of ``tools/<name>.py`` (not added to ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, TOOLS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
