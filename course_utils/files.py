"""Writing files so that no reader ever sees half of one: write to a temporary name beside the file, then
rename it over the file (a rename is all or nothing)."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path, write) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``: ``path`` is either the old
    file or the whole new one, never half written. A failed write leaves no temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
