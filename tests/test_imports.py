"""How the packages import each other: no cycles, and the light parts stay light (no torch where none is needed)."""
import ast
import subprocess
import sys
from pathlib import Path

from app_server import ROOT

PACKAGES = ("kd", "study")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """Our modules a module's code imports, at the top or inside functions (a lazy import still makes a circle)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from kd import imagefile` imports the submodule kd.imagefile; `from kd.data import x` imports kd.data
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names]
        else:
            continue
        out.update(n for n in names if n in modules)
    return out


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).glob("*.py"))}
    return {m: imported(ast.parse(p.read_text(), str(p)), set(files)) - {m} for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (depth-first search, white/grey/black)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_finder_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_lazy_and_from_package_imports():
    graph = import_graph()
    assert "kd.runtime" in graph["kd.sharpen"]  # imported inside sharpen()
    assert "kd.checkpoint" in graph["kd.registry"]  # `from kd import checkpoint`


def test_no_import_cycles_in_kd_and_study():
    assert find_cycle(import_graph()) is None


def fresh_modules(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_degrading_needs_no_torch():
    loaded = fresh_modules("import kd.degrade")
    assert "kd.degrade" in loaded and "torch" not in loaded


def test_the_package_api_still_works_after_its_modules_are_imported(odd_photo, net_path):
    """``kd.sharpen`` and ``kd.degrade`` name both a module and a function: the function wins, as the README shows."""
    import kd
    import kd.degrade  # noqa: F401 - binds the submodule on the package, which must not hide the function
    import kd.sharpen  # noqa: F401
    from kd.degrade import degrade
    from kd.registry import load
    from kd.sharpen import sharpen

    assert kd.sharpen is sharpen and kd.degrade is degrade and kd.load is load
    assert kd.sharpen(odd_photo, model=net_path, backend="torch").shape == odd_photo.shape
    assert kd.PRESETS["medium"] == kd.Degradation(**vars(kd.PRESETS["medium"]))


def test_sharpen_command_warns_of_nothing():
    """``python -m kd.sharpen`` ran a module that the package had already imported: Python warned on every run."""
    done = subprocess.run([sys.executable, "-m", "kd.sharpen", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "--input" in done.stdout
    assert "Warning" not in done.stderr, done.stderr


def top_level_names(tree: ast.Module) -> set[str]:
    """What a module defines itself (functions, classes, assigned names), not what it imports."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def test_every_name_is_imported_from_its_home():
    """One home per piece of code: a name is imported from the module that defines it, never from one that borrows
    it (``kd.temporal`` used to lend its clip readers to ``kd.call``; a lender cannot change without breaking others)."""
    ours = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).glob("*.py")) if p.stem != "__init__"}
    defined = {m: top_level_names(ast.parse(p.read_text())) for m, p in ours.items()}
    importers = [*ours.values(), ROOT / "app.py", *sorted((ROOT / "tests").glob("*.py"))]
    borrowed = [f"{p.relative_to(ROOT)}: {a.name} from {node.module}"
                for p in importers for node in ast.walk(ast.parse(p.read_text()))
                if isinstance(node, ast.ImportFrom) and node.module in defined
                for a in node.names if a.name not in defined[node.module] and f"{node.module}.{a.name}" not in ours]
    assert borrowed == []


def test_study_statistics_need_no_ml_stack():
    """Votes are analysed elsewhere (a laptop, a notebook): the report, MOS and Bradley-Terry must not need torch."""
    loaded = fresh_modules("import study.report, study.mos, study.bt, study.votes_io")
    assert "study.report" in loaded and "torch" not in loaded and "kd.sharpen" not in loaded
