"""The leaf package imports only the standard library; import-linter holds the rest of the
layering (pyproject.toml), and this test holds what import-linter cannot list: "anything
outside the standard library"."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parents[2] / "src" / "teg_ota" / "domain" / "model"
CORE = MODEL.parent / "core"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(MODEL.glob("*.py")), ids=lambda p: p.name)
def test_model_imports_only_the_standard_library_and_itself(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "teg_ota":
            assert name.startswith("teg_ota.domain.model"), f"{path.name} imports {name}"
        else:
            assert top in sys.stdlib_module_names or top == "__future__", (
                f"{path.name} imports {name}"
            )


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_imports_only_the_model_and_itself(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "teg_ota":
            assert name.startswith(("teg_ota.domain.model", "teg_ota.domain.core")), (
                f"{path.name} imports {name}"
            )
        else:
            assert top in sys.stdlib_module_names or top == "__future__", (
                f"{path.name} imports {name}"
            )
