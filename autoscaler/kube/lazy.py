"""Lazy package imports of the Kubernetes client library (its generated models cost ~40 MB).

``kubernetes_asyncio``'s package ``__init__`` files import every generated API and model class
(~1,000 modules: ``import kubernetes_asyncio.client`` alone adds ~37 MB of resident memory),
and any import of one of its modules runs them. The controller uses none of those classes: it
sends and reads raw JSON through ``ApiClient.call_api`` (:mod:`autoscaler.kube.client`).

:func:`install` (called by :mod:`autoscaler.kube.client` before it imports the library) makes
the heavy package ``__init__`` modules lazy: each is created from its real file location (so its
submodules import normally) but, instead of running its imports, it reads them (with
:mod:`ast`) and resolves each name on first access (PEP 562 module ``__getattr__``). Every name
the real ``__init__`` defines is still there (``kubernetes_asyncio.client.V1Pod`` imports
``models/v1_pod.py`` when first used), so code elsewhere that uses the library is unaffected;
statements other than imports (``__version__``, ``__all__``) run as written. If the library was
already imported, nothing changes.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

LAZY_PACKAGES = frozenset(
    {
        "kubernetes_asyncio",
        "kubernetes_asyncio.client",
        "kubernetes_asyncio.client.api",
        "kubernetes_asyncio.client.models",
    }
)
"""Packages whose ``__init__`` only imports names (the generated APIs and models)."""


class _LazyInitLoader(importlib.abc.Loader):
    """Runs a package ``__init__``'s non-import statements; its imports resolve on access."""

    def __init__(self, path: str) -> None:
        self.path = path

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        source = Path(self.path).read_text(encoding="utf-8")
        tree = ast.parse(source, self.path)
        lazy: dict[str, tuple[str, str | None]] = {}
        """Name -> (module to import, attribute of it or None for the module itself)."""
        kept: list[ast.stmt] = []
        package = module.__name__
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                for alias in node.names:
                    if alias.name == "*":
                        kept.append(node)  # not lazy-able: run as written
                        break
                    lazy[alias.asname or alias.name] = (base, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname is None:
                        # ``import a.b`` binds ``a``: run it (cheap unless ``a`` is heavy).
                        kept.append(ast.Import(names=[alias]))
                    else:
                        lazy[alias.asname] = (alias.name, None)
            elif not isinstance(node, ast.ImportFrom):
                kept.append(node)
        namespace = module.__dict__

        def __getattr__(name: str) -> Any:  # noqa: N807 - PEP 562 module hook
            target = lazy.get(name)
            if target is None:
                msg = f"module {package!r} has no attribute {name!r}"
                raise AttributeError(msg)
            imported = importlib.import_module(target[0])
            value = imported if target[1] is None else _attribute(imported, target)
            namespace[name] = value
            return value

        def __dir__() -> list[str]:  # noqa: N807 - PEP 562 module hook
            return sorted({*namespace, *lazy})

        namespace["__getattr__"] = __getattr__
        namespace["__dir__"] = __dir__
        namespace["__lazy_names__"] = frozenset(lazy)
        if kept:
            code = compile(ast.Module(body=kept, type_ignores=[]), self.path, "exec")
            exec(code, namespace)  # noqa: S102 - the package's own statements, from its file


def _attribute(module: ModuleType, target: tuple[str, str | None]) -> Any:
    """``from module import name``: an attribute, or else a submodule of that name."""
    name = target[1]
    assert name is not None
    try:
        return getattr(module, name)
    except AttributeError:
        return importlib.import_module(f"{target[0]}.{name}")


class _LazyPackageFinder(importlib.abc.MetaPathFinder):
    """Finds :data:`LAZY_PACKAGES` where they are installed and loads them lazily."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in LAZY_PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None or not spec.origin.endswith("__init__.py"):
            return None
        lazy = importlib.machinery.ModuleSpec(
            fullname, _LazyInitLoader(spec.origin), origin=spec.origin, is_package=True
        )
        lazy.submodule_search_locations = spec.submodule_search_locations
        lazy.has_location = True
        return lazy


def install() -> bool:
    """Load the library's heavy packages lazily from now on; False if it is already imported."""
    if "kubernetes_asyncio" in sys.modules:
        return False
    if not any(isinstance(finder, _LazyPackageFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LazyPackageFinder())
    return True
