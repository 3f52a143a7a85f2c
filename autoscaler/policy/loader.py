"""Policy files to validated :class:`~autoscaler.policy.models.ScalingPolicy` objects.

The loader reads YAML files (one or more documents each), validates every document with the model
in :mod:`autoscaler.policy.models` and maps each problem back to ``FILE:LINE:COL`` and a field path
such as ``spec.metrics[1].kvCache.target.averageValue``. It never raises on bad input: it returns
a :class:`LoadResult` holding the good policies and one
:class:`~autoscaler.errors.PolicyFileError` per bad file, each listing all of that file's problems.

A file is all-or-nothing: a file with any error contributes no policy. One bad file never stops the
other files from loading.

Line numbers come from PyYAML's node API (:func:`yaml.compose_all`): the node tree keeps the start
mark of every key and value, and the pydantic error ``loc`` is walked down that tree. A missing key
points at its parent mapping, an unknown key at the key itself. Duplicate keys (which PyYAML would
silently overwrite) are detected on the node tree.

:class:`PolicyDirectory` is what the controller (:mod:`autoscaler.controller`) calls every tick for
hot reload: it re-parses only files whose ``(mtime, size, inode)`` changed and keeps serving the
last good version of a file that became invalid, while reporting its errors. The ``validate`` and
``lint`` commands (:mod:`autoscaler.commands.validate`) use :func:`load_paths`.

A policy with ``spec.capacity.profile`` names a GenAI-Perf/AIPerf sweep (a file or a directory,
relative to the policy file). The loader reads it (:mod:`autoscaler.policy.capacity_profile`),
computes the per-replica capacity at the policy's ``spec.slo`` and returns the policy with that
figure in ``spec.capacity`` (:meth:`~autoscaler.policy.models.CapacitySeed.with_profile_capacity`);
the reading itself is kept on :attr:`LoadedPolicy.profile` for ``validate`` and ``explain``. A
profile that cannot be read or used is an error located at ``spec.capacity.profile``, and the
sweep's files count as part of the policy file for hot reload: when one of them changes, the
policy file is parsed again.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pydantic
import structlog
import yaml

from autoscaler.errors import Location, PolicyError, PolicyFileError
from autoscaler.policy.budget import BUDGET_KIND, ScalingBudget
from autoscaler.policy.capacity_profile import (
    ProfileCapacity,
    ProfileError,
    capacity_at_slo,
    profile_dependencies,
    read_sweep,
)
from autoscaler.policy.models import ScalingPolicy

_log = structlog.get_logger(__name__)

POLICY_SUFFIXES = (".yaml", ".yml")
"""File name endings read from a directory."""

MAX_FILE_BYTES = 1024 * 1024
"""Largest policy file read (1 MiB, the size limit of a Kubernetes ConfigMap)."""

_MAX_INPUT_REPR = 60

_Stamp = tuple[int, int, int]


def _stamp(path: Path) -> _Stamp:
    """``(mtime_ns, size, inode)`` of a path; ``(-1, -1, -1)`` when it cannot be read."""
    try:
        info = path.stat()
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return (-1, -1, -1)
    return (info.st_mtime_ns, info.st_size, info.st_ino)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileReading:
    """What the loader read from a policy's ``spec.capacity.profile``."""

    path: str
    """The profile path as resolved (relative to the policy file's directory)."""
    capacity: ProfileCapacity
    """The per-replica capacity at the policy's SLO, with margins and the sweep's lengths."""
    files: tuple[str, ...]
    """The export files read."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form: ``source: profile``, the path, the files and the capacity."""
        return {
            "source": "profile",
            "profile": self.path,
            "files": list(self.files),
            **self.capacity.to_json(),
        }


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy and where it was read from (file and line of its document)."""

    policy: ScalingPolicy
    """The validated policy."""
    location: Location
    """File, line and column where the policy's document starts."""
    node: yaml.Node | None = field(default=None, repr=False, compare=False)
    """The document's YAML node tree (for locating fields); None when not read from YAML."""
    profile: ProfileReading | None = field(default=None, compare=False)
    """The capacity read from ``spec.capacity.profile`` (None: the policy names no profile)."""

    @property
    def key(self) -> str:
        """``namespace/name`` of the policy."""
        return self.policy.key

    def locate(self, path: Sequence[int | str]) -> Location:
        """Where the field at ``path`` (YAML keys and list indexes) is written.

        A field that is not written (a default) points at its nearest written parent.
        """
        field_path = _format_path(path)
        if self.node is None:
            return Location(
                self.location.file, self.location.line, self.location.column, field_path
            )
        node = _node_for(self.node, path, at_key=False)
        return _mark_location(self.location.file, node.start_mark, field_path)


@dataclass(frozen=True)
class LoadedBudget:
    """A valid ``ScalingBudget`` and where it was read from."""

    budget: ScalingBudget
    location: Location

    @property
    def key(self) -> str:
        """The budget's name."""
        return self.budget.key


@dataclass(frozen=True)
class LoadResult:
    """Outcome of loading one or more files: the good policies and the errors of the bad files."""

    policies: tuple[LoadedPolicy, ...] = ()
    """Valid policies, in file order then document order."""
    errors: tuple[PolicyFileError, ...] = ()
    """One entry per file with problems; each lists all of that file's problems."""
    stale: frozenset[str] = frozenset()
    """Keys of policies served from the last good version of a file that is now invalid
    (only set by :class:`PolicyDirectory`)."""
    budgets: tuple[LoadedBudget, ...] = ()
    """Valid ``ScalingBudget`` documents (of valid files, or last good versions)."""

    @property
    def ok(self) -> bool:
        """True when no file had any error."""
        return not self.errors

    def by_key(self) -> dict[str, ScalingPolicy]:
        """The policies by ``namespace/name``."""
        return {loaded.key: loaded.policy for loaded in self.policies}

    def all_errors(self) -> list[PolicyError]:
        """Every individual located problem, file by file."""
        return [error for file_error in self.errors for error in file_error.errors]


def format_errors(errors: Iterable[PolicyFileError | PolicyError]) -> list[str]:
    """Human lines ``FILE:LINE:COL: field: message``, one per problem.

    Args:
        errors: file errors (expanded into their problems) or single problems.

    Returns:
        One line per problem.
    """
    lines: list[str] = []
    for error in errors:
        items = error.errors if isinstance(error, PolicyFileError) else [error]
        lines.extend(str(item) for item in items)
    return lines


def error_to_json(error: PolicyError) -> dict[str, Any]:
    """One problem as a JSON-ready object: ``file, line, column, field, message``."""
    location = error.location or Location("")
    return {
        "file": location.file,
        "line": location.line,
        "column": location.column,
        "field": location.field,
        "message": error.message,
    }


def errors_to_json(errors: Iterable[PolicyFileError | PolicyError]) -> list[dict[str, Any]]:
    """Every problem as a JSON-ready object (see :func:`error_to_json`)."""
    out: list[dict[str, Any]] = []
    for error in errors:
        items = error.errors if isinstance(error, PolicyFileError) else [error]
        out.extend(error_to_json(item) for item in items)
    return out


# --------------------------------------------------------------------------------------------
# Node tree helpers
# --------------------------------------------------------------------------------------------


def _mark_location(file: str, mark: yaml.Mark | None, field_path: str = "") -> Location:
    if mark is None:
        return Location(file, field=field_path)
    return Location(file, mark.line + 1, mark.column + 1, field_path)


def _offset_location(file: str, text: str, offset: int) -> Location:
    """Line and column (1-based) of a character offset in ``text``."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Location(file, line, column)


def _format_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":  # pydantic marks an error in a mapping's key this way
            out += " (key)"
        else:
            out += f".{part}" if out else str(part)
    return out


def _scalar_key(node: yaml.Node) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def _find_key(mapping: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    """The last ``(key node, value node)`` pair whose key is ``key``."""
    found: tuple[yaml.Node, yaml.Node] | None = None
    for key_node, value_node in mapping.value:
        if _scalar_key(key_node) == key:
            found = (key_node, value_node)
    return found


def _node_for(root: yaml.Node, loc: Sequence[int | str], *, at_key: bool) -> yaml.Node:
    """The deepest node on ``loc`` (the key node itself for the last step if ``at_key``)."""
    node = root
    for depth, part in enumerate(loc):
        last = depth == len(loc) - 1
        if isinstance(node, yaml.MappingNode):
            pair = _find_key(node, str(part))
            if pair is None:
                return node
            node = pair[0] if (last and at_key) else pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def _duplicate_keys(file: str, root: yaml.Node) -> list[PolicyError]:
    """Errors for repeated keys in any mapping of the tree (PyYAML keeps the last silently)."""
    errors: list[PolicyError] = []
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[int | str, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:  # aliases share nodes; visit each once
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, yaml.Node] = {}
            for key_node, value_node in node.value:
                key = _scalar_key(key_node)
                if key is not None and key_node.tag != "tag:yaml.org,2002:merge":
                    if key in first:
                        previous = first[key].start_mark.line + 1
                        errors.append(
                            PolicyError(
                                f"duplicate key {key!r} (first defined on line {previous}); "
                                "YAML keeps only one of them, remove the other",
                                _mark_location(
                                    file, key_node.start_mark, _format_path((*path, key))
                                ),
                            )
                        )
                    else:
                        first[key] = key_node
                stack.append((value_node, (*path, key if key is not None else "?")))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, index)) for index, item in enumerate(node.value))
    errors.sort(
        key=lambda e: (e.location.line or 0, e.location.column or 0) if e.location else (0, 0)
    )
    return errors


# --------------------------------------------------------------------------------------------
# Pydantic errors to located errors
# --------------------------------------------------------------------------------------------


def _inner_model(annotation: object) -> type[pydantic.BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return None
    for arg in typing.get_args(annotation):
        model = _inner_model(arg)
        if model is not None:
            return model
    return None


def _model_at(
    loc: Sequence[int | str], root: type[pydantic.BaseModel] = ScalingPolicy
) -> type[pydantic.BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (for 'did you mean' hints)."""
    model: type[pydantic.BaseModel] | None = root
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        match = next(
            (info for name, info in model.model_fields.items() if part in {name, info.alias}),
            None,
        )
        if match is None:
            return None
        model = _inner_model(match.annotation)
    return model


def _allowed_keys(
    loc: Sequence[int | str], root: type[pydantic.BaseModel] = ScalingPolicy
) -> list[str]:
    model = _model_at(loc, root)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_INPUT_REPR else text[: _MAX_INPUT_REPR - 3] + "..."


def _message(error: Any, root: type[pydantic.BaseModel] = ScalingPolicy) -> str:
    """A readable message for one pydantic error (``pydantic_core.ErrorDetails``)."""
    kind = error["type"]
    loc: tuple[int | str, ...] = tuple(error["loc"])
    if kind == "missing":
        return f"required field {str(loc[-1])!r} is missing" if loc else "required field missing"
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else "?"
        allowed = _allowed_keys(loc[:-1], root)
        text = f"unknown field {name!r}"
        close = difflib.get_close_matches(name, allowed, n=1)
        if close:
            text += f"; did you mean {close[0]!r}?"
        if allowed:
            text += f" (expected one of: {', '.join(allowed)})"
        return text
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if "field" in (error.get("ctx") or {}):
        return message
    if kind not in {"value_error", "assertion_error"} and "input" in error:
        message += f", got {_short_repr(error['input'])}"
    return message


def _validation_errors(
    file: str,
    root: yaml.Node,
    exc: pydantic.ValidationError,
    model: type[pydantic.BaseModel] = ScalingPolicy,
) -> list[PolicyError]:
    errors: list[PolicyError] = []
    for item in exc.errors(include_url=False):
        loc: tuple[int | str, ...] = tuple(item["loc"])
        field = (item.get("ctx") or {}).get("field")
        if isinstance(field, str):
            # A rule across fields names the one to blame (e.g. minReplicas) in its context.
            loc = (*loc, field)
        node = _node_for(root, loc, at_key=item["type"] == "extra_forbidden")
        errors.append(
            PolicyError(
                _message(item, model), _mark_location(file, node.start_mark, _format_path(loc))
            )
        )
    return errors


# --------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    """Result of parsing one file: its policies and its own errors (before cross-file checks)."""

    file: str
    policies: tuple[LoadedPolicy, ...]
    errors: tuple[PolicyError, ...]
    budgets: tuple[LoadedBudget, ...] = ()
    dependencies: tuple[tuple[str, _Stamp], ...] = ()
    """Other paths read for this file (capacity profiles) and their stamps taken before they
    were read; a change to one means a re-parse."""


def _error_order(error: PolicyError) -> tuple[int, int]:
    location = error.location
    if location is None:
        return (0, 0)
    return (location.line or 0, location.column or 0)


def _is_truly_empty(node: yaml.Node) -> bool:
    return (
        isinstance(node, yaml.ScalarNode)
        and node.tag == "tag:yaml.org,2002:null"
        and node.value == ""
    )


def _compose(file: str, text: str) -> tuple[list[yaml.Node], list[PolicyError]]:
    """The documents' root nodes up to the first syntax error, and that error if any."""
    nodes: list[yaml.Node] = []
    try:
        nodes.extend(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        return nodes, [
            PolicyError(f"YAML syntax error: {problem}{context}", _mark_location(file, mark))
        ]
    except yaml.reader.ReaderError as exc:
        location = _offset_location(file, text, exc.position)
        return nodes, [PolicyError(f"YAML cannot contain this character: {exc.reason}", location)]
    except yaml.YAMLError as exc:
        return nodes, [PolicyError(f"invalid YAML: {exc}", Location(file, 1, 1))]
    except RecursionError:
        return nodes, [PolicyError("YAML nesting is too deep", Location(file, 1, 1))]
    return nodes, []


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _read_profile(
    file: str, node: yaml.Node, policy: ScalingPolicy
) -> tuple[ScalingPolicy, ProfileReading | None, list[PolicyError], list[tuple[str, _Stamp]]]:
    """Read ``spec.capacity.profile`` (if any) and put the capacity at the SLO into the policy.

    Returns:
        The policy (with the capacity filled in), the reading, the located errors and the paths
        the result depends on (watched for hot reload, also when reading failed).
    """
    seed = policy.spec.capacity
    if seed is None or seed.profile is None:
        return policy, None, [], []
    slo = policy.spec.slo
    raw = Path(seed.profile)
    path = raw if raw.is_absolute() else Path(file).parent / raw
    # Stamped before reading: a change made while reading is seen on the next reload.
    dependencies = [(p, _stamp(Path(p))) for p in profile_dependencies(path)]
    try:
        sweep = read_sweep(path)
        capacity = capacity_at_slo(
            sweep.points,
            ttft=(slo.ttft.quantile, slo.ttft.target) if slo and slo.ttft else None,
            itl=(slo.itl.quantile, slo.itl.target) if slo and slo.itl else None,
        )
    except ProfileError as exc:
        where = _node_for(node, ("spec", "capacity", "profile"), at_key=False)
        location = _mark_location(file, where.start_mark, "spec.capacity.profile")
        return policy, None, [PolicyError(f"capacity profile {exc}", location)], dependencies
    if sweep.notes:
        capacity = replace(capacity, notes=tuple(sorted({*capacity.notes, *sweep.notes})))
    lengths = (
        (capacity.input_tokens, capacity.output_tokens)
        if capacity.input_tokens and capacity.output_tokens
        else None
    )
    seeded = seed.with_profile_capacity(capacity.requests_per_second, lengths)
    spec = policy.spec.model_copy(update={"capacity": seeded})
    reading = ProfileReading(str(path), capacity, sweep.files)
    return policy.model_copy(update={"spec": spec}), reading, [], dependencies


def _validate_document(
    file: str, node: yaml.Node
) -> tuple[ScalingPolicy | ScalingBudget | None, list[PolicyError]]:
    start = _mark_location(file, node.start_mark)
    if not isinstance(node, yaml.MappingNode):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else f"the scalar {node.value!r}"
        return None, [
            PolicyError(
                f"a policy document must be a mapping (apiVersion, kind, ...), got {kind}", start
            )
        ]
    errors = _duplicate_keys(file, node)
    try:
        data = _construct(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or node.start_mark
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [
            *errors,
            PolicyError(f"cannot read value: {problem}", _mark_location(file, mark)),
        ]
    except RecursionError:
        return None, [*errors, PolicyError("YAML nesting is too deep", start)]
    model: type[ScalingPolicy] | type[ScalingBudget] = (
        ScalingBudget
        if isinstance(data, dict) and data.get("kind") == BUDGET_KIND
        else ScalingPolicy
    )
    try:
        policy = model.model_validate(data)
    except pydantic.ValidationError as exc:
        return None, [*errors, *_validation_errors(file, node, exc, model)]
    if errors:
        return None, errors
    return policy, []


def _parse_text(text: str, file: str) -> _Parsed:
    nodes, syntax_errors = _compose(file, text)
    policies: list[LoadedPolicy] = []
    budgets: list[LoadedBudget] = []
    errors: list[PolicyError] = []
    dependencies: list[tuple[str, _Stamp]] = []
    keys: dict[str, Location] = {}
    for node in nodes:
        if _is_truly_empty(node):
            continue
        policy, doc_errors = _validate_document(file, node)
        errors.extend(doc_errors)
        if policy is None:
            continue
        where = _mark_location(file, node.start_mark)
        if isinstance(policy, ScalingBudget):
            twin = next((b for b in budgets if b.key == policy.key), None)
            if twin is not None:
                meta = _node_for(node, ("metadata",), at_key=False)
                errors.append(
                    PolicyError(
                        f"budget {policy.key} is defined twice (also at line {twin.location.line})",
                        _mark_location(file, meta.start_mark, "metadata"),
                    )
                )
                continue
            budgets.append(LoadedBudget(policy, where))
            continue
        policy, reading, profile_errors, read = _read_profile(file, node, policy)
        dependencies.extend(read)
        if profile_errors:
            errors.extend(profile_errors)
            continue
        if policy.key in keys:
            meta = _node_for(node, ("metadata",), at_key=False)
            errors.append(
                PolicyError(
                    f"policy {policy.key} is defined twice (also at line {keys[policy.key].line})",
                    _mark_location(file, meta.start_mark, "metadata"),
                )
            )
            continue
        keys[policy.key] = where
        policies.append(LoadedPolicy(policy, where, node, reading))
    errors.extend(syntax_errors)
    errors.sort(key=_error_order)
    return _Parsed(
        file,
        tuple(policies),
        tuple(errors),
        budgets=tuple(budgets),
        dependencies=tuple(dict.fromkeys(dependencies)),
    )


def _decode(data: bytes, file: str) -> tuple[str | None, PolicyError | None]:
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        prefix = data[: exc.start]
        line = prefix.count(b"\n") + 1
        column = exc.start - (prefix.rfind(b"\n") + 1) + 1
        return None, PolicyError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} cannot be decoded",
            Location(file, line, column),
        )


def _parse_bytes(data: bytes, file: str) -> _Parsed:
    if len(data) > MAX_FILE_BYTES:
        message = f"file is {len(data)} bytes, more than the {MAX_FILE_BYTES} bytes allowed"
        return _Parsed(file, (), (PolicyError(message, Location(file, 1, 1)),))
    text, error = _decode(data, file)
    if text is None:
        assert error is not None
        return _Parsed(file, (), (error,))
    return _parse_text(text, file)


def _parse_file(path: Path) -> _Parsed:
    file = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _Parsed(
            file, (), (PolicyError(f"cannot read file: {exc.strerror}", Location(file)),)
        )
    return _parse_bytes(data, file)


def _combine(parsed: Iterable[_Parsed], incumbents: dict[str, str] | None = None) -> LoadResult:
    """Join per-file results, rejecting a policy key already defined by another file.

    Args:
        parsed: per-file results in load order.
        incumbents: key -> file that owned the key before (hot reload); that file keeps the key
            even when it sorts later.
    """
    items = list(parsed)
    owners: dict[str, tuple[str, Location]] = {}
    for item in items:
        if item.errors:
            continue
        for loaded in item.policies:
            owner = owners.get(loaded.key)
            preferred = (incumbents or {}).get(loaded.key)
            if owner is None or (preferred == item.file and owner[0] != item.file):
                owners[loaded.key] = (item.file, loaded.location)
    policies: list[LoadedPolicy] = []
    budgets: dict[str, LoadedBudget] = {}
    errors: list[PolicyFileError] = []
    for item in items:
        file_errors = list(item.errors)
        if not file_errors:
            for budget in item.budgets:
                twin = budgets.get(budget.key)
                if twin is not None and twin.location.file != item.file:
                    file_errors.append(
                        PolicyError(
                            f"budget {budget.key} is already defined in {twin.location}",
                            Location(
                                item.file, budget.location.line, budget.location.column, "metadata"
                            ),
                        )
                    )
                else:
                    budgets[budget.key] = budget
            for loaded in item.policies:
                owner_file, owner_location = owners[loaded.key]
                if owner_file != item.file:
                    file_errors.append(
                        PolicyError(
                            f"policy {loaded.key} is already defined in {owner_location}",
                            Location(
                                item.file, loaded.location.line, loaded.location.column, "metadata"
                            ),
                        )
                    )
        if file_errors:
            errors.append(PolicyFileError(item.file, file_errors))
            for budget in item.budgets:
                if budgets.get(budget.key) is budget:
                    del budgets[budget.key]
        else:
            policies.extend(item.policies)
    return LoadResult(tuple(policies), tuple(errors), budgets=tuple(budgets.values()))


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def load_text(text: str | bytes, source_name: str = "<string>") -> LoadResult:
    """Load policies from YAML text (one or more documents).

    Args:
        text: the YAML text, or raw bytes (decoded as UTF-8).
        source_name: the name used as the file in error locations.

    Returns:
        The policies, or the errors; never raises on bad input.
    """
    parsed = (
        _parse_bytes(text, source_name)
        if isinstance(text, bytes)
        else _parse_text(text, source_name)
    )
    return _combine([parsed])


def policy_files(directory: Path) -> list[Path]:
    """The policy files of a directory: ``*.yaml``/``*.yml``, sorted, not hidden, not recursive.

    Hidden entries are skipped so a Kubernetes ConfigMap mount (``..data``) is read once.
    """
    return [directory / name for name in _policy_names(directory)]


def _policy_names(directory: Path) -> list[str]:
    """The names of :func:`policy_files`."""
    # scandir: the entry types come with the listing (a stat only for symbolic links, as a
    # ConfigMap mount's files are); this runs every tick over every policy file.
    with os.scandir(directory) as entries:
        names = sorted(
            entry.name
            for entry in entries
            if entry.name.endswith(POLICY_SUFFIXES)
            and not entry.name.startswith(".")
            and entry.is_file()
        )
    return names


def _expand(paths: Iterable[str | Path]) -> Iterator[Path | PolicyError]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                yield from policy_files(path)
            except OSError as exc:
                yield PolicyError(f"cannot list directory: {exc.strerror}", Location(str(path)))
        elif path.exists():
            yield path
        else:
            yield PolicyError("no such file or directory", Location(str(path)))


def load_paths(paths: Iterable[str | Path]) -> LoadResult:
    """Load every policy from files and directories (each directory's files sorted).

    Args:
        paths: files or directories.

    Returns:
        The good policies and one error entry per bad file; never raises on bad input.
    """
    parsed: list[_Parsed] = []
    for item in _expand(paths):
        if isinstance(item, PolicyError):
            assert item.location is not None
            parsed.append(_Parsed(item.location.file, (), (item,)))
        else:
            parsed.append(_parse_file(item))
    return _combine(parsed)


def load_path(path: str | Path) -> LoadResult:
    """Load one file or directory (see :func:`load_paths`)."""
    return load_paths([path])


# --------------------------------------------------------------------------------------------
# Hot reload
# --------------------------------------------------------------------------------------------


@dataclass
class PolicyDirectory:
    """A directory (or file) of policies, re-read cheaply on every :meth:`reload`.

    Only files whose ``(mtime_ns, size, inode)`` changed are parsed again; a file is also parsed
    again when a capacity profile it names (``spec.capacity.profile``: the file, or the directory,
    its sub-directories and export files) changed, appeared or went away. When a file that was
    valid becomes invalid, its last good policies are kept (listed in :attr:`LoadResult.stale`)
    and its errors are reported; a deleted file's policies are dropped. When two files define the
    same policy, the file that already served it keeps it.
    """

    path: Path
    """Directory (or single file) to watch."""
    keep_nodes: bool = True
    """Keep each policy's YAML node tree (:meth:`LoadedPolicy.locate` to the field). The
    controller turns it off: it never locates fields, and at 1,000 policies the trees are ~36 MB;
    without them ``locate`` points at the document's start."""
    _stamps: dict[str, _Stamp] = field(default_factory=dict, init=False, repr=False)
    _current: dict[str, _Parsed] = field(default_factory=dict, init=False, repr=False)
    _last_good: dict[str, _Parsed] = field(default_factory=dict, init=False, repr=False)
    _owners: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _paths: dict[str, Path] = field(default_factory=dict, init=False, repr=False)
    _result: LoadResult | None = field(default=None, init=False, repr=False)
    """The last result, while it stands: no file changed since, and it left the owners of the
    policies as they were (so combining the same files again gives it again)."""
    parse_count: int = field(default=0, init=False)
    """How many file parses were done in total (lets tests and metrics see the cache work)."""

    def _list(self) -> list[Path] | PolicyError:
        try:
            if self.path.is_dir():
                # The paths of the last listing are kept: building a path costs more than the
                # stat that follows (1,000 files a tick).
                known = self._paths
                self._paths = {
                    name: known.get(name) or self.path / name for name in _policy_names(self.path)
                }
                return list(self._paths.values())
        except OSError as exc:
            return PolicyError(f"cannot list directory: {exc.strerror}", Location(str(self.path)))
        if self.path.is_file():
            return [self.path]
        return PolicyError("no such file or directory", Location(str(self.path)))

    def reload(self) -> LoadResult:
        """Re-read changed files and return every policy currently in force.

        Returns:
            The policies (including last-good versions of now-invalid files, see ``stale``) and
            the errors of every currently invalid file.
        """
        listed = self._list()
        if isinstance(listed, PolicyError):
            self._stamps.clear()
            self._current.clear()
            self._result = None
            return LoadResult(
                tuple(p for parsed in self._last_good.values() for p in parsed.policies),
                (PolicyFileError(str(self.path), [listed]),),
                frozenset(p.key for parsed in self._last_good.values() for p in parsed.policies),
                tuple(b for parsed in self._last_good.values() for b in parsed.budgets),
            )
        seen: set[str] = set()
        changed = False
        for path in listed:
            file = str(path)
            seen.add(file)
            stamp = _stamp(path)
            if self._stamps.get(file) == stamp and file in self._current:
                dependencies = self._current[file].dependencies
                if all(_stamp(Path(dep)) == old for dep, old in dependencies):
                    continue
            changed = True
            self.parse_count += 1
            self._stamps[file] = stamp
            parsed = _parse_file(path)
            if not self.keep_nodes:
                parsed = replace(
                    parsed, policies=tuple(replace(p, node=None) for p in parsed.policies)
                )
            self._current[file] = parsed
            _log.info(
                "policy_file_read",
                file=file,
                policies=len(parsed.policies),
                errors=len(parsed.errors),
            )
            for error in parsed.errors:
                _log.warning("policy_error", error=str(error))
        for gone in set(self._current) - seen:
            _log.info("policy_file_removed", file=gone)
            self._current.pop(gone, None)
            self._stamps.pop(gone, None)
            self._last_good.pop(gone, None)
            changed = True
        if not changed and self._result is not None:
            return self._result
        ordered = [self._current[file] for file in sorted(self._current)]
        combined = _combine(ordered, self._owners)
        bad_files = {error.file for error in combined.errors}
        policies = list(combined.policies)
        budgets = {b.key: b for b in combined.budgets}
        stale: set[str] = set()
        served = {loaded.key for loaded in policies}
        for parsed in ordered:
            if parsed.file in bad_files:
                previous = self._last_good.get(parsed.file)
                for loaded in previous.policies if previous else ():
                    if loaded.key not in served:
                        policies.append(loaded)
                        served.add(loaded.key)
                        stale.add(loaded.key)
                for budget in previous.budgets if previous else ():
                    budgets.setdefault(budget.key, budget)  # a bad edit keeps the last good
            else:
                self._last_good[parsed.file] = parsed
        owners = {loaded.key: loaded.location.file for loaded in policies}
        result = LoadResult(
            tuple(policies), combined.errors, frozenset(stale), tuple(budgets.values())
        )
        self._result = result if owners == self._owners else None
        self._owners = owners
        return result

    def policies(self) -> list[ScalingPolicy]:
        """Reload and return the policies in force (usable as the controller's policy provider).

        Errors are logged when a file is read, not on every call.
        """
        return [loaded.policy for loaded in self.reload().policies]


# --------------------------------------------------------------------------------------------
# Objects that are not files (ScalingPolicy resources)
# --------------------------------------------------------------------------------------------


def validate_document(
    data: object, source: str
) -> tuple[ScalingPolicy | None, tuple[PolicyError, ...]]:
    """Validate one already-decoded policy document (e.g. a ScalingPolicy resource's JSON).

    Errors carry ``source`` as the file (``ScalingPolicy nim/llama``) and the field path
    (``spec.metrics[0].kvCache.target``), with the same messages as for files; there are no
    line numbers.

    Returns:
        The policy, or None and every problem; never raises on bad input.
    """
    try:
        return ScalingPolicy.model_validate(data), ()
    except pydantic.ValidationError as exc:
        errors = tuple(
            PolicyError(_message(item), Location(source, field=_format_path(tuple(item["loc"]))))
            for item in exc.errors(include_url=False)
        )
        return None, errors
