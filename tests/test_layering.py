"""The architecture, checked: imports flow one way between the pipeline stages.

cli, pipeline -> study, federated -> training, evaluation, interpret -> models, losses, data -> _utils, errors
(study also reads the pipeline's stamp rule, neuro_ssl.pipeline.stamps, to stamp its units).
losses import only torch (and their own _dist); models import only torch, MONAI and their own
checkpoint helpers; nothing imports cli; report only renders arrays and files it is given (no other stage).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "neuro_ssl"

# stage -> neuro_ssl subpackages it may import
ALLOWED = {
    "errors": set(),
    "_utils": {"errors", "_utils"},
    "data": {"errors", "_utils", "data"},
    "losses": {"losses"},
    "models": {"errors", "_utils", "models"},
    "training": {"errors", "_utils", "data", "models", "losses", "training", "evaluation"},
    "evaluation": {"errors", "_utils", "data", "models", "evaluation"},
    "federated": {"errors", "_utils", "data", "models", "training", "federated"},
    "interpret": {"errors", "_utils", "data", "models", "interpret"},
    "report": {"errors", "_utils", "report"},
    "pipeline": {"errors", "_utils", "pipeline", "report", "data", "cli"},
    "study": {"errors", "_utils", "data", "models", "training", "evaluation", "study", "pipeline"},
    "cli": {"*"},
}
THIRD_PARTY_LOSSES = {"torch", "math", "__future__", "typing", "warnings", "dataclasses"}


def _stage(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    if len(rel.parts) == 1:  # __init__.py, __main__.py, errors.py
        return "errors" if rel.stem == "errors" else "root"
    return rel.parts[0]


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_stages_import_only_downstream():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        stage = _stage(path)
        if stage not in ALLOWED or "*" in ALLOWED[stage]:
            continue
        for name in _imports(path):
            if not name.startswith("neuro_ssl."):
                continue
            target = name.split(".")[1]
            if target not in ALLOWED[stage]:
                problems.append(f"{path.relative_to(PACKAGE.parent)} ({stage}) imports {name}")
    assert not problems, "\n".join(problems)


def test_losses_need_only_torch():
    problems = []
    for path in sorted((PACKAGE / "losses").rglob("*.py")):
        for name in _imports(path):
            root = name.split(".")[0]
            if root != "neuro_ssl" and root not in THIRD_PARTY_LOSSES:
                problems.append(f"{path.name} imports {name}")
    assert not problems, "\n".join(problems)


def test_nothing_imports_cli_outside_cli_and_pipeline():
    offenders = [
        str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
        if _stage(p) not in ("cli", "pipeline", "root") and any(n.startswith("neuro_ssl.cli") for n in _imports(p))
    ]
    assert not offenders


def test_every_torch_load_is_weights_only():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" \
                    and getattr(node.func.value, "id", None) == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not offenders, offenders


def test_cli_help_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import contextlib, io, sys; from neuro_ssl.cli.main import main, COMMANDS\n"
        "for c in COMMANDS:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main([c, '--help']) == 0, c\n"
        "heavy = [m for m in ('monai', 'captum', 'matplotlib', 'sklearn', 'torch', 'flwr', 'ray') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "HEAVY=", f"--help imported: {out.stdout.strip()}"
