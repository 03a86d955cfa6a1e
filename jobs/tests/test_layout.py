"""The module graph of jobs/: imports point one way, and none hides in a function.

views/admin/commands → services → ips, and everything → models/roles; an
import inside a function to dodge a cycle is a rule in the wrong module.
"""

import ast
from pathlib import Path

JOBS = Path(__file__).resolve().parents[1]
# Django's own idiom: checks register when the app is ready.
ALLOWED_LOCAL_IMPORTS = {("apps.py", "checks")}


def _modules():
    for path in sorted(JOBS.rglob("*.py")):
        if "tests" in path.parts or "migrations" in path.parts:
            continue
        yield path


def _jobs_imports(path, tree):
    """(module imported, inside a function?) for each import of a jobs module."""
    package = path.relative_to(JOBS.parent).with_suffix("").parts[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                names = [".".join([*base, node.module])] if node.module else [".".join([*base, a.name]) for a in node.names]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == "jobs" or name.startswith("jobs."):
                out.append((name.split(".")[1] if "." in name else name, node))
    return out


def _graph():
    graph, local = {}, []
    for path in _modules():
        tree = ast.parse(path.read_text())
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        inner = {id(n) for f in functions for n in ast.walk(f)}
        name = path.stem if path.parent == JOBS else path.relative_to(JOBS).parts[0]
        for target, node in _jobs_imports(path, tree):
            if id(node) in inner and (path.name, target) not in ALLOWED_LOCAL_IMPORTS:
                local.append(f"{path.relative_to(JOBS)}:{node.lineno} imports {target}")
            if path.parent == JOBS:
                graph.setdefault(name, set()).add(target)
    return graph, local


def test_no_module_of_jobs_imports_another_inside_a_function():
    _, local = _graph()
    assert local == []


def test_the_module_graph_of_jobs_has_no_cycle():
    graph, _ = _graph()
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt != node:
                visit(nxt)
        stack.pop()

    for node in sorted(graph):
        visit(node)
    assert cycles == []


def test_imports_point_one_way():
    graph, _ = _graph()
    for low in ("models", "roles", "ips", "ipsversions", "crypto"):
        assert not graph.get(low, set()) & {"services", "views", "admin", "checks", "demo"}, (low, graph.get(low))
    assert "views" not in graph.get("services", set())
    assert "services" not in graph.get("ips", set())
    assert graph.get("ips", set()) <= {"ipsversions"}
