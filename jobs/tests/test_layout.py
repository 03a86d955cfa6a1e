"""The module graph of jobs/ follows the README's Layout, and no import hides in a function.

The arrows (README, "Layout"):
- the outer layer (views, admin, auth, management commands, urls) → services;
- tasks → services and events; only apps (when ready) imports tasks, only urls imports views;
- services → ips, events, models, roles, text;
- ips → ipsversions, metrics; events, text and metrics → nothing of jobs; models → roles, ipsversions, crypto;
- outside services and ips, ``ips`` is imported only to catch its errors.
A package (services, ips, models, views) counts as one module; an import
inside a function to dodge a cycle is a rule in the wrong module.
"""

import ast
from pathlib import Path

JOBS = Path(__file__).resolve().parents[1]
# Django's idiom: what registers itself (checks, the task backends) is imported when the app is ready.
ALLOWED_LOCAL_IMPORTS = {("apps.py", "checks"), ("apps.py", "tasks")}
#: What each inner module may import of jobs, and nothing else.
INNER = {
    "roles": set(),
    "ipsversions": set(),
    "crypto": set(),
    "events": set(),
    "text": set(),
    "metrics": set(),
    "ips": {"ipsversions", "metrics"},
    "models": {"roles", "ipsversions", "crypto"},
    "services": {"ips", "events", "models", "roles", "text", "metrics"},
}
OUTER = {"views", "admin", "auth", "management", "urls", "tasks", "context_processors"}


def _modules():
    for path in sorted(JOBS.rglob("*.py")):
        if "tests" in path.parts or "migrations" in path.parts:
            continue
        yield path


def _name(path):
    """The module of jobs a file belongs to: a package's files are the package."""
    return path.stem if path.parent == JOBS else path.relative_to(JOBS).parts[0]


def _jobs_imports(path, tree):
    """(module imported, node) for each import of a jobs module."""
    package = path.relative_to(JOBS.parent).with_suffix("").parts[:-1]
    if path.name == "__init__.py":
        package = path.relative_to(JOBS.parent).parts[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                names = [".".join([*base, node.module])] if node.module else [".".join([*base, a.name]) for a in node.names]
            elif node.module == "jobs":  # from jobs import x, y
                names = [f"jobs.{a.name}" for a in node.names]
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
        name = _name(path)
        graph.setdefault(name, set())
        for target, node in _jobs_imports(path, tree):
            if id(node) in inner and (path.name, target) not in ALLOWED_LOCAL_IMPORTS:
                local.append(f"{path.relative_to(JOBS)}:{node.lineno} imports {target}")
            if target != name:
                graph[name].add(target)
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
            visit(nxt)
        stack.pop()

    for node in sorted(graph):
        visit(node)
    assert cycles == []


def test_each_inner_module_imports_only_what_the_layout_allows():
    graph, _ = _graph()
    for module, allowed in INNER.items():
        assert module in graph, module
        assert graph[module] <= allowed, (module, graph[module] - allowed)


def test_nothing_imports_the_outer_layer_but_django_s_entry_points():
    graph, _ = _graph()
    for module, targets in graph.items():
        outer = targets & OUTER
        if module == "urls":
            outer -= {"views"}
        if module == "apps":
            outer -= {"tasks"}
        assert not outer, (module, outer)


def test_outside_services_ips_is_imported_only_for_its_errors():
    """One door to IPS: only services call it; the outer layer may catch what it raises."""
    calls = []
    for path in _modules():
        if _name(path) in ("services", "ips"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ips":
                if not node.attr.startswith("Ips") or not node.attr.endswith(("Error", "Fault", "Timeout", "Reply", "Unavailable")):
                    calls.append(f"{path.relative_to(JOBS)}:{node.lineno} ips.{node.attr}")
    assert calls == []
