"""The demo world is a separate room: no core module (tinygan/, outside tinygan/demo/) imports tinygan.demo,
lazily or not, and none imports TensorFlow at module level (only inside the functions that need it)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tinygan"
TENSORFLOW = ("tensorflow", "tensorflow_hub", "tf_keras")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Module names an import statement imports (``from a import b`` also names ``a.b``: b may be a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from the package of this module, `level - 1` packages up
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def imports(source: str, module: str, is_package: bool = False) -> tuple[set[str], set[str]]:
    """(every module imported anywhere, those imported at module level: not inside a function body)."""
    tree = ast.parse(source)
    anywhere = {m for node in ast.walk(tree) for m in _imported(node, module, is_package)}
    top, todo = set(), list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue  # runs when called, not on import
        top.update(_imported(node, module, is_package))
        todo.extend(ast.iter_child_nodes(node))
    return anywhere, top


def _core_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if PACKAGE / "demo" not in p.parents)


def _is_demo(name: str) -> bool:
    return name == "tinygan.demo" or name.startswith("tinygan.demo.")


def _is_tensorflow(name: str) -> bool:
    return name.split(".")[0] in TENSORFLOW


def test_the_scan_covers_the_core_and_the_demo_package_exists():
    names = {_module_name(p) for p in _core_modules()}
    assert {"tinygan.teacher", "tinygan.evaluate", "tinygan.export", "tinygan.generate", "tinygan.params"} <= names
    assert not any(_is_demo(n) for n in names)
    assert (PACKAGE / "demo" / "__init__.py").is_file()


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_does_not_import_the_demo_nor_tensorflow_at_import(path):
    module = _module_name(path)
    anywhere, top = imports(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    assert not [m for m in anywhere if _is_demo(m)], f"{module} imports the demo package"
    assert not [m for m in top if _is_tensorflow(m)], f"{module} imports TensorFlow at module level"


@pytest.mark.parametrize("source, demo, tf_at_top", [
    ("from tinygan import demo", True, False),
    ("def f():\n    from tinygan.demo.judge import NAME\n", True, False),  # lazy imports count
    ("from .demo import world", True, False),  # relative, from tinygan/x.py
    ("from . import demo", True, False),
    ("import tinygan.demonstration", False, False),
    ("import tensorflow as tf", False, True),
    ("try:\n    import tensorflow_hub as hub\nexcept ImportError:\n    hub = None\n", False, True),
    ("class A:\n    import tensorflow\n", False, True),  # a class body runs on import
    ("def f():\n    import tensorflow as tf\n", False, False),
    ("f = lambda: __import__('os')\nimport numpy", False, False),
])
def test_the_scan_can_fail(source, demo, tf_at_top):
    anywhere, top = imports(source, "tinygan.x")
    assert any(_is_demo(m) for m in anywhere) == demo
    assert any(_is_tensorflow(m) for m in top) == tf_at_top
