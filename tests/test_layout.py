"""The package's layout: the core (what a learner reads) imports none of the course's tooling."""
import ast
from pathlib import Path

import course_utils

PACKAGE = Path(course_utils.__file__).parent
CORE = PACKAGE / "core"


def imported_modules(source: str, module: str) -> set[str]:
    """The absolute names of the modules that ``source`` (the text of module ``module``, a dotted
    name) imports, anywhere in it, functions included."""
    package = module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climb level - 1 packages up from this module's package
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                prefix = ".".join(base)
                targets = [f"{prefix}.{node.module}"] if node.module else [f"{prefix}.{a.name}" for a in node.names]
                names.update(targets)
            else:
                names.add(node.module)
    return names


def tooling_imports(source: str, module: str) -> set[str]:
    """The modules of course_utils outside course_utils.core that ``source`` imports."""
    return {name for name in imported_modules(source, module)
            if (name == "course_utils" or name.startswith("course_utils."))
            and not (name == "course_utils.core" or name.startswith("course_utils.core."))}


def test_the_rule_sees_every_kind_of_import():
    mod = "course_utils.core.sampling"
    assert tooling_imports("from .guidance import cfg_eps", mod) == set()
    assert tooling_imports("from ..checks import check_snr", mod) == {"course_utils.checks"}
    assert tooling_imports("from .. import plotting", mod) == {"course_utils.plotting"}
    assert tooling_imports("def f():\n    import course_utils.widgets\n", mod) == {"course_utils.widgets"}
    assert tooling_imports("from course_utils import show_images", mod) == {"course_utils"}
    assert tooling_imports("from course_utils.core.schedule import NoiseSchedule", mod) == set()


def test_the_core_imports_none_of_the_tooling():
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 8, [p.name for p in modules]
    found = {p.name: sorted(tooling_imports(p.read_text(), f"course_utils.core.{p.stem}")) for p in modules}
    assert not {k: v for k, v in found.items() if v}, f"the core imports the course's tooling: {found}"


def test_the_core_holds_the_learners_modules():
    expected = {"schedule", "models", "sampling", "guidance", "training", "data"}
    assert expected <= {p.stem for p in CORE.glob("*.py")}
    tooling = {"checks", "evaluation", "widgets", "recipes", "notebooks", "cli"}
    assert tooling <= {p.stem for p in PACKAGE.glob("*.py")}


def test_the_cores_training_module_holds_the_loop_not_the_machinery():
    """The budget, the bar, the stop button, autocast and DistributedDataParallel live in course_utils.fitting."""
    source = (CORE / "training.py").read_text()
    imported = imported_modules(source, "course_utils.core.training")
    assert not imported & {"tqdm.auto", "signal", "threading", "time", "contextlib"}, imported
    assert "DistributedDataParallel" not in source and "def training_steps(" in source
    assert "def fit(" in (PACKAGE / "fitting.py").read_text()


def test_the_core_is_told_whether_to_autocast_and_never_reads_the_processor():
    import pytest

    from course_utils.core.device import autocast_for

    assert "cpuinfo" not in (CORE / "device.py").read_text() and "cpuinfo" in (PACKAGE / "cpu.py").read_text()
    with pytest.raises(TypeError, match="True or False"):
        autocast_for("cpu", None)
