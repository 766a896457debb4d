"""The shape of blast_core, checked: layers import only downwards, the Azure SDK
stays in its adapters, and no module, class or function grows past the sizes the
README's architecture section promises."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "blast_core"

# Lowest first: a module may import its own layer and the layers before it.
LAYERS = ["domain", "foundation", "blast", "storage", "service", "api", "hosts", "cli"]
FOUNDATION = {"settings", "logs", "telemetry"}

MAX_MODULE_LINES = 350
MAX_CLASS_LINES = 200
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "blast_core" or len(parts) < 2:
        return None
    if parts[1] in FOUNDATION:
        return "foundation"
    return parts[1] if parts[1] in LAYERS else None


def _imports(path: Path) -> list[str]:
    """Every module named by an import in the file, relative imports resolved."""
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found += [f"{base}.{alias.name}" for alias in node.names] if base == "blast_core" else [base]
    return found


def test_the_layer_folders_exist():
    for layer in LAYERS:
        if layer != "foundation":
            assert (PACKAGE / layer / "__init__.py").is_file(), layer
    for module in FOUNDATION:
        assert (PACKAGE / f"{module}.py").is_file(), module


@pytest.mark.parametrize("path", _modules(), ids=lambda path: _name(path))
def test_a_layer_imports_only_the_layers_below_it(path):
    own = _layer(_name(path))
    if own is None:
        return
    upward = [
        module
        for module in _imports(path)
        if (other := _layer(module)) is not None and LAYERS.index(other) > LAYERS.index(own)
    ]
    assert not upward, f"{_name(path)} ({own}) imports {upward}"


def test_the_domain_touches_neither_the_machine_nor_the_network():
    machine = {"os", "subprocess", "shutil", "pathlib", "socket", "threading", "tempfile",
               "requests", "urllib", "http", "azure"}
    for path in (PACKAGE / "domain").rglob("*.py"):
        for module in _imports(path):
            assert module.split(".")[0] not in machine, f"{_name(path)} imports {module}"
            assert _layer(module) in (None, "domain"), f"{_name(path)} imports {module}"


def test_the_azure_sdk_lives_in_the_storage_adapters():
    for path in _modules():
        name = _name(path)
        azure = [module for module in _imports(path) if module.split(".")[0] == "azure"]
        functions = [module for module in azure if module.startswith("azure.functions")]
        if name == "blast_core.hosts.azure_functions":
            assert azure == functions, f"{name} imports {azure}"
        elif name.startswith("blast_core.storage") or name == "blast_core.telemetry":
            assert not functions, f"{name} imports {functions}"
        else:
            assert not azure, f"{name} imports {azure}"


def test_the_service_layer_works_through_the_storage_ports():
    """Only bootstrap names the concrete adapters; the use cases know `storage/ports.py`."""
    for path in (PACKAGE / "service").rglob("*.py"):
        if path.name == "bootstrap.py":
            continue
        adapters = [module for module in _imports(path)
                    if module.startswith("blast_core.storage") and module != "blast_core.storage.ports"]
        assert not adapters, f"{_name(path)} imports {adapters}"


def test_the_function_app_is_bindings_only():
    imports = _imports(ROOT / "function_app.py")
    assert {module.split(".")[0] for module in imports} <= {"azure", "blast_core", "__future__"}
    assert all(not module.startswith("azure.") or module.startswith("azure.functions") for module in imports)


@pytest.mark.parametrize("path", _modules(), ids=lambda path: _name(path))
def test_no_unit_is_oversized(path):
    text = path.read_text()
    assert text.count("\n") <= MAX_MODULE_LINES, f"{_name(path)} has {text.count(chr(10))} lines"
    for node in ast.walk(ast.parse(text)):
        length = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "lineno") else 0
        if isinstance(node, ast.ClassDef):
            assert length <= MAX_CLASS_LINES, f"class {node.name} in {_name(path)} has {length} lines"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert length <= MAX_FUNCTION_LINES, f"{node.name} in {_name(path)} has {length} lines"
