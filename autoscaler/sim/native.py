"""The compiled build of the simulator's engine (optional), and the choice of engine for a run.

:mod:`autoscaler.sim.engine` is plain, fully typed Python and stays the reference. ``make native``
(``python -m autoscaler.sim.native build``) compiles a copy of it with mypyc (shipped with mypy,
a development dependency; it needs a C compiler) into the extension module
``autoscaler.sim._engine_native``, which runs the same code several times faster. The copy carries
the digest of the source it was built from; a build that no longer matches ``engine.py`` is
ignored (``auto``) or refused (``compiled``), so an edit of the engine is never shadowed by a stale
binary. Nothing else changes: the fleet (:mod:`autoscaler.sim.fleet`) takes the engine module it is
given, and ``tests/sim/test_native.py`` checks that both engines give the same results.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import structlog

from autoscaler.sim import engine as python_engine

log = structlog.get_logger(__name__)

ENGINES = ("auto", "python", "compiled")
"""``auto``: the compiled engine when its build is current, else the Python one."""
NATIVE_NAME = "_engine_native"
NATIVE_MODULE = f"autoscaler.sim.{NATIVE_NAME}"
SOURCE = Path(python_engine.__file__)
HERE = SOURCE.parent


class NativeUnavailable(RuntimeError):
    """The compiled engine is missing, stale or fails to load; the message says which."""


def source_digest() -> str:
    """Digest of ``engine.py`` as it is now (what a current build was made from)."""
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:20]


def _native() -> ModuleType:
    try:
        module = importlib.import_module(NATIVE_MODULE)
    except ImportError as exc:
        msg = f"no compiled engine ({exc}); build it with `make native`"
        raise NativeUnavailable(msg) from exc
    built = getattr(module, "SOURCE_DIGEST", None)
    if built != source_digest():
        msg = (
            f"the compiled engine was built from another engine.py (digest {built}, now "
            f"{source_digest()}); rebuild it with `make native`"
        )
        raise NativeUnavailable(msg)
    return module


def status() -> str:
    """``compiled`` when a current build loads, else why not."""
    try:
        _native()
    except NativeUnavailable as exc:
        return str(exc)
    return "compiled"


def engine_module(choice: str = "auto") -> ModuleType:
    """The engine module for ``choice`` (one of :data:`ENGINES`).

    Raises:
        NativeUnavailable: ``compiled`` was asked for and no current build loads.
        ValueError: an unknown choice.
    """
    if choice == "python":
        return python_engine
    if choice == "compiled":
        return _native()
    if choice == "auto":
        try:
            return _native()
        except NativeUnavailable:
            return python_engine
    msg = f"unknown engine {choice!r} (one of {', '.join(ENGINES)})"
    raise ValueError(msg)


_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
setup(
    name="engine-native",
    ext_modules=mypycify([sys.argv[1]], opt_level="3", debug_level="0"),
    script_args=["build_ext", "--build-lib", sys.argv[2], "--build-temp", sys.argv[3]],
)
"""


def build() -> list[Path]:
    """Compile a copy of ``engine.py`` into ``autoscaler/sim/_engine_native*.so``.

    Returns:
        The extension files written.

    Raises:
        NativeUnavailable: mypyc or the C compiler failed (its output is in the message).
    """
    digest = source_digest()
    copy = HERE / f"{NATIVE_NAME}.py"
    for old in HERE.glob(f"{NATIVE_NAME}*.so"):
        old.unlink()
    text = SOURCE.read_text(encoding="utf-8")
    copy.write_text(
        f"{text}\n\nSOURCE_DIGEST = {digest!r}\n# digest of the engine.py it was built from\n",
        encoding="utf-8",
    )
    try:
        with tempfile.TemporaryDirectory(prefix="engine-native-") as tmp:
            lib, temp = Path(tmp) / "lib", Path(tmp) / "temp"
            # Run from an empty directory: setuptools must not read the project's pyproject.toml.
            done = subprocess.run(
                [sys.executable, "-c", _SETUP, str(copy), str(lib), str(temp)],
                cwd=tmp,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                msg = f"mypyc build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
                raise NativeUnavailable(msg)
            written = []
            for built in lib.rglob(f"{NATIVE_NAME}*.so"):
                target = HERE / built.name
                shutil.copy2(built, target)
                written.append(target)
    finally:
        copy.unlink(missing_ok=True)
    if not written:
        msg = "mypyc build produced no extension module"
        raise NativeUnavailable(msg)
    importlib.invalidate_caches()
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m autoscaler.sim.native build|status``."""
    parser = argparse.ArgumentParser(prog="python -m autoscaler.sim.native", description=__doc__)
    parser.add_argument("command", choices=("build", "status"))
    args = parser.parse_args(argv)
    if args.command == "status":
        print(status())
        return 0
    try:
        files = build()
    except NativeUnavailable as exc:
        print(f"engine build: {exc}", file=sys.stderr)
        return 1
    for path in files:
        print(f"built {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
