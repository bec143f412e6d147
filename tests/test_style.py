"""The code keeps the style pyproject.toml's [tool.ruff] sets: line length, import order, pycodestyle and pyflakes."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_code_passes_ruff_with_the_projects_configuration():
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(ROOT)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_reads_the_configuration_that_names_the_rules(tmp_path):
    """A line over the configured length is reported: the check is on, and pyproject.toml is the one read."""
    long_line = tmp_path / "long.py"
    long_line.write_text("x = " + " + ".join(["1"] * 60) + "\n")
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
               str(long_line)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "E501" in done.stdout, done.stdout
