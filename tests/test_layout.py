"""The house's arrows point one way: what imports what, read from the code itself."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_registry_imports_neither_the_console_nor_the_router():
    for path in sorted((ROOT / "registry").rglob("*.py")):
        wrong = {
            name
            for name in imported_modules(path)
            if name.split(".")[0] == "console"
            or name in ("inference.router", "inference.services", "inference.openai_services")
        }
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_the_router_and_the_services_know_no_worker_kind():
    for name in ("router.py", "services.py", "openai_services.py"):
        source = (ROOT / "inference" / name).read_text()
        for kind_talk in ("is_openai", "WorkerKind", ".kind", "protocols.openai", "protocols.anthropic"):
            assert kind_talk not in source, f"inference/{name} mentions {kind_talk!r}"
    assert not {
        name for name in imported_modules(ROOT / "inference" / "router.py") if name.startswith("inference.protocols")
    }


def test_each_worker_kind_is_one_protocol_module():
    from inference.protocols import PROTOCOLS
    from registry.models import WorkerKind

    assert set(PROTOCOLS) == set(WorkerKind.values)
    for kind, protocol in PROTOCOLS.items():
        assert type(protocol).__module__ == f"inference.protocols.{kind}"
