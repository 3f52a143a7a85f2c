"""requirements.lock, the image's pinned dependency set, agrees with pyproject.toml.

The Dockerfile builds the image from the lock (``pip wheel --require-hashes -r
requirements.lock``); ``make lock`` generates it from the runtime dependencies of
pyproject.toml (no extras). These checks fail when one is changed without the other.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .conftest import REPO

LOCK = REPO / "requirements.lock"
PROJECT = "nim-autoscaler (pyproject.toml)"


@dataclass
class Pin:
    """One locked package."""

    version: Version
    hashes: int = 0
    via: set[str] = field(default_factory=set)


def read_lock() -> dict[str, Pin]:
    """Canonical name -> pin, with its hash count and the ``# via`` parents uv wrote."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for raw in LOCK.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        pinned = re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", raw)
        if pinned:
            current = pins[canonicalize_name(pinned.group(1))] = Pin(Version(pinned.group(2)))
        elif current is not None and line.startswith("--hash=sha256:"):
            current.hashes += 1
        elif current is not None and line.startswith("#"):
            parent = line.lstrip("#").strip().removeprefix("via").strip()
            if parent:
                current.via.add(parent)
    return pins


def runtime_requirements() -> list[Requirement]:
    """pyproject.toml's ``[project] dependencies`` (what the controller image carries)."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return [Requirement(text) for text in data["project"]["dependencies"]]


class TestLockMatchesPyproject:
    """The lock is what ``make lock`` makes from the current pyproject.toml."""

    def test_every_dependency_is_pinned_inside_its_range(self) -> None:
        """Each runtime dependency is locked, at a version its specifier allows."""
        pins = read_lock()
        for requirement in runtime_requirements():
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{requirement.name} is in pyproject.toml but not locked"
            assert requirement.specifier.contains(pins[name].version, prereleases=True), (
                f"{requirement.name}=={pins[name].version} is outside {requirement.specifier}"
            )

    def test_direct_dependencies_are_exactly_pyprojects(self) -> None:
        """The packages locked because of the project are its runtime dependencies, no more."""
        direct = {name for name, pin in read_lock().items() if PROJECT in pin.via}
        expected = {canonicalize_name(r.name) for r in runtime_requirements()}
        assert expected == direct

    def test_every_locked_package_is_needed(self) -> None:
        """Each pin is wanted by the project or by another locked package."""
        pins = read_lock()
        for name, pin in pins.items():
            parents = {canonicalize_name(p) for p in pin.via if p != PROJECT}
            assert PROJECT in pin.via or parents & set(pins), f"{name} is locked for nothing"

    def test_extras_stay_out_of_the_image(self) -> None:
        """The ``sim`` and ``dev`` extras (plots, progress bar, tools) are not in the lock."""
        pins = read_lock()
        for leftover in ("matplotlib", "tqdm", "pytest", "uv", "prometheus-api-client"):
            assert leftover not in pins

    def test_every_pin_is_hashed(self) -> None:
        """Every pin carries hashes, so the image build can use ``--require-hashes``."""
        assert all(pin.hashes > 0 for pin in read_lock().values())


class TestImageUsesTheLock:
    """The Dockerfile installs from the lock, and the build context includes it."""

    def test_dockerfile_builds_wheels_from_the_lock(self) -> None:
        """Dependencies come from the lock with hashes required; the project adds none."""
        text = (REPO / "Dockerfile").read_text(encoding="utf-8")
        assert "COPY requirements.lock" in text
        assert re.search(r"pip wheel [^\n]*--require-hashes[^\n]*-r requirements\.lock", text)
        assert re.search(r"pip wheel [^\n]*--no-deps[^\n]* \.", text)

    def test_build_context_includes_the_lock(self) -> None:
        """``.dockerignore`` (an allow-list) lets the lock into the build context."""
        patterns = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        assert "!requirements.lock" in patterns
