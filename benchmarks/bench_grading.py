"""What grading costs an instructor: nbgrader's autograde of the course's notebooks, in seconds.

    python benchmarks/bench_grading.py [--students 1] [--every-cell]

Lays out an nbgrader course in a temporary folder with the course's config (python -m course_utils
nbgrader-course), releases each notebook with exercises, submits it for each student filled in with the
solutions, and times ``nbgrader autograde NN_name``, the whole command as an instructor runs it (nbgrader's own
start included, once a command). Prints the seconds of each notebook's command, that time per submission, and
the total. ``--every-cell`` grades with ``c.ExecuteGradedCells.run_every_cell = True`` (every cell runs, with the
tests' budgets of seconds) for comparison. Run it alone: timings drift when another job shares the cores.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from course_utils.cpu import cpu_summary
from course_utils.grading import filled_in
from course_utils.notebooks import graded_notebooks


def nbgrader(course: Path, *args: str) -> float:
    """Run one nbgrader command in the course folder; its seconds."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"nbgrader {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=1, help="submissions per notebook (default 1)")
    parser.add_argument("--every-cell", action="store_true", help="run every cell, not only what the grade reads")
    args = parser.parse_args()
    print(cpu_summary())
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as folder:
        course = Path(folder)
        subprocess.run([sys.executable, "-m", "course_utils", "nbgrader-course", str(course)], check=True,
                       capture_output=True)
        if args.every_cell:
            with open(course / "nbgrader_config.py", "a") as f:
                f.write("c.ExecuteGradedCells.run_every_cell = True\n")
        total = 0.0
        for source_path in graded_notebooks():
            name = source_path.stem
            nbgrader(course, "generate_assignment", name)
            release = course / "release" / name / f"{name}.ipynb"
            source = nbformat.read(course / "source" / name / f"{name}.ipynb", as_version=4)
            for k in range(args.students):
                folder = course / "submitted" / f"student{k:03d}" / name
                folder.mkdir(parents=True)
                nbformat.write(filled_in(nbformat.read(release, as_version=4), source), folder / f"{name}.ipynb")
            seconds = nbgrader(course, "autograde", name)
            total += seconds
            print(f"{name}: nbgrader autograde {seconds:.1f} s for {args.students} submission(s), "
                  f"{seconds / args.students:.1f} s each")
        runs = len(graded_notebooks()) * args.students
        print(f"all {len(graded_notebooks())} notebooks: {total:.1f} s for {runs} graded notebooks, "
              f"{total / runs:.1f} s each ({'every cell' if args.every_cell else 'the cells the grade reads'})")


if __name__ == "__main__":
    main()
