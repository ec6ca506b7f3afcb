"""Rules of the code base that a linter does not check."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("luminet", "luminet_det")
SOURCES = [
    p
    for folder in ("luminet", "luminet_det", "tools", "datasets", "tests")
    for p in sorted((ROOT / folder).rglob("*.py"))
]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_imports_a_private_name_of_another_module():
    """``from x import _y`` of a project module (absolute or relative) is not allowed: modules
    talk through public names only."""
    assert len(SOURCES) > 50
    bad = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = node.module or ""
            if node.level == 0 and module.split(".")[0] not in PROJECT:
                continue  # third-party modules are not ours to judge
            bad += [
                f"{path.relative_to(ROOT)}:{node.lineno}: from {'.' * node.level}{module} "
                f"import {a.name}"
                for a in node.names
                if _is_private(a.name)
            ]
    assert not bad, "\n".join(bad)
