"""Import paths read from data (a run folder's ``spec.json``): what may be imported for them.

A run folder may come from someone else. Importing a module runs its top-level code, so
``fusion.name: "package.module:Class"`` and a ``train.callbacks`` entry of that form are
resolved without trust only to a class defined in an allowed module, checked **before
anything is imported**:

- mmcore's fusion and head modules (:data:`MMCORE_MODULES` and their submodules);
- the modules installed plugin distributions register: each entry point of the group
  ``mmcore`` and every module a registration of the registry names (its implementation or
  options model), exactly those modules.

A module named ``__main__`` (whose import runs a command line) is refused even with
``trust_code``. Any exception raised while importing, ``SystemExit`` and
``KeyboardInterrupt`` included, is contained and reported as a :class:`SpecError` naming the
file and the field.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmcore.errors import SpecError
from mmcore.spec.modules import SPEC_COPY

if TYPE_CHECKING:
    from mmcore.plugins.registry import Registry

#: what a refusal to run code from a run folder tells the user to do
TRUST_HINT = ("trust_code=True (mmcore.load) or --trust-code (mmcore evaluate, predict, export, "
              "serve)")
#: what a refusal to import a class named in a spec.json (a fusion, a callback) tells the user
#: to do
SPEC_JSON_TRUST_HINT = ("--trust-code (mmcore train, mmcore validate, mmcore tune), "
                        "trust_code=True (mmcore.load_spec, validate_spec, Trainer, "
                        "mmcore.prepare), or "
                        "name the class in a Python spec file")
#: mmcore's own modules (and their submodules) a run folder may name classes in
MMCORE_MODULES = ("mmcore.fusion", "mmcore.fusions", "mmcore.head", "mmcore.heads")

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def plugin_modules(registry: Registry | None) -> set[str]:
    """The modules installed plugins register: entry points of the group ``mmcore`` and the
    module of every registration in ``registry`` (nothing is imported to find them)."""
    from importlib.metadata import entry_points

    modules = {ep.value.split(":")[0].strip() for ep in entry_points(group="mmcore")}
    if registry is not None:
        for kind in ("modality", "fusion", "head", "callback"):
            try:
                entries = registry.entries(kind)  # type: ignore[arg-type]
            except (KeyError, AttributeError):
                continue
            for reg in entries:
                for target in (reg.impl, reg.options):
                    if isinstance(target, str):
                        modules.add(target.partition(":")[0])
                    elif isinstance(target, type):
                        modules.add(target.__module__)
    return {m for m in modules if m}


def allowed_module(module_name: str, registry: Registry | None) -> bool:
    """Whether a run folder may name a class in ``module_name`` without trust."""
    if any(module_name == m or module_name.startswith(m + ".") for m in MMCORE_MODULES):
        return True
    return module_name in plugin_modules(registry)


def _inside(origin: str | None, folder: Path | None) -> bool:
    """Whether the file or package folder ``origin`` lies in ``folder``, not counting an
    installed environment's ``site-packages`` under it (a project's ``.venv`` beside its
    ``spec.json``): a folder supplies a module only from a path on ``sys.path``, and one of
    the folder's own site-packages is there only when the user installed into it."""
    if folder is None or not origin or not Path(origin).is_absolute():  # no folder, no file
        return False
    try:
        path = Path(origin).resolve()
        if not path.is_relative_to(folder):
            return False
        return not {"site-packages", "dist-packages"} & set(path.relative_to(folder).parts)
    except (OSError, ValueError):
        return False


def _located(name: str, folder: Path | None) -> str | None:
    """Why module ``name`` may not be imported for a run in ``folder`` (``None``: it may),
    looked up with :func:`importlib.util.find_spec` (on a dotted name that imports its
    parent packages)."""
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        return f"module {name!r} cannot be found ({exc})"
    if found is None:
        return f"module {name!r} is not installed"
    locations = list(found.submodule_search_locations or [])
    if _inside(found.origin, folder) or any(_inside(loc, folder) for loc in locations):
        return f"module {name!r} is located inside the run folder"
    return None


def _find_top(top: str, folder: Path | None) -> str | None:
    """Why the top-level package ``top`` may not be imported for a run in ``folder``
    (``None``: it may). :func:`importlib.util.find_spec` on a top-level name imports nothing."""
    return _located(top, folder)


def _check_location(module_name: str, folder: Path | None) -> str | None:
    """Why ``module_name`` may not be imported for a run in ``folder``: each package on the
    way looked up before it is imported (only for allowed or trusted modules: looking up
    ``a.b`` imports ``a``)."""
    parts = module_name.split(".")
    for i in range(2, len(parts) + 1):
        why = _located(".".join(parts[:i]), folder)
        if why is not None:
            return why
    return None


def resolve_run_fusion_class(
    name: str,
    run_dir: str | Path | None,
    *,
    trust_code: bool = False,
    source: str = "spec.json",
    registry: Registry | None = None,
    hint: str = TRUST_HINT,
) -> type:
    """The ``Fusion`` subclass a run folder's ``fusion.name`` import path names (or any
    ``spec.json``'s, ``run_dir`` its folder), resolved without running code from the folder
    nor any module outside the allow-list (see the module's docstring). File paths
    (``"file.py:Class"``, including the run's copied ``spec.py``) are executed only with
    ``trust_code``. Raises :class:`SpecError` (field ``fusion.name``) otherwise, also for
    anything an import raises; ``hint`` says how to opt in."""
    from mmcore.fusion import Fusion

    folder = Path(run_dir).resolve() if run_dir is not None else None  # None: data from no folder

    def refuse(why: str) -> SpecError:
        return SpecError(source, [("fusion.name", f"{name!r} refused: {why}")])

    module_part, sep, attr = name.partition(":")
    if not sep or not module_part or not attr:
        raise refuse("expected a registered fusion name or an import path 'package.module:Class'")
    if module_part.endswith(".py"):
        if not trust_code:
            what = (
                f"it names a class in {SPEC_COPY}, the copy of the spec file a run keeps "
                "when its fusion is defined in its spec file"
                if Path(module_part).name == SPEC_COPY
                else "it is a Python file path"
            )
            raise refuse(
                f"{what}; loading it would execute that file, and a run folder or spec.json "
                f"is data, not code. If you trust it, load it with {hint}"
            )
        from mmcore.spec.modules import resolve_fusion_class

        obj: Any = _contained(lambda: resolve_fusion_class(name, folder), refuse)
    else:
        obj = import_checked(name, folder, trust_code=trust_code, registry=registry,
                             refuse=refuse, what="fusion", hint=hint)
    if not (isinstance(obj, type) and issubclass(obj, Fusion)):
        raise refuse(f"{obj!r} is not a subclass of mmcore.Fusion")
    return obj


def import_checked(name: str, folder: Path | None, *, trust_code: bool,
                   registry: Registry | None,
                   refuse: Any, what: str, hint: str) -> Any:
    """The object an import path ``"package.module:Class"`` read from data names, imported
    only when its module is allowed (or ``trust_code``) and lies outside ``folder`` (the
    folder the data came from); else ``refuse(why)`` is raised. ``what`` names the kind of
    module allowed ("fusion"), ``hint`` how to opt in."""
    module_part, _, attr = name.partition(":")
    if not _DOTTED.match(module_part) or not _DOTTED.match(attr):
        raise refuse("not an import path 'package.module:Class' of Python identifiers")
    if "__main__" in module_part.split("."):
        raise refuse("a __main__ module runs a command line when imported; name the "
                     "module that defines the class")
    top = module_part.split(".")[0]
    why = _find_top(top, folder)
    if why is None and not trust_code and not allowed_module(module_part, registry):
        raise refuse(
            f"module {module_part!r} is none of mmcore's {what} modules nor a module an "
            f"installed mmcore plugin registers, and importing it would run its code; if "
            f"you trust it, load it with {hint}"
        )
    if why is None:
        why = _contained(lambda: _check_location(module_part, folder), refuse)
    if why is not None and why.endswith("inside the run folder"):
        instead = ("; install it as a package, or name its file ('file.py:Class'), which "
                   f"runs only with the opt-in: {hint}" if what == "fusion"
                   else "; install it as a package")
        raise refuse(f"{why}, and a module there is not imported even with the opt-in (it "
                     f"would be found before an installed one of that name){instead}")
    if why is not None:  # trusting the run would not help: the module is not there
        raise refuse(f"{why}; install the package that provides it, as when the run "
                     "was trained")
    from mmcore.plugins.registry import import_object

    obj = _contained(lambda: import_object(name), refuse)
    defined_in = getattr(obj, "__module__", None)
    if (not trust_code and isinstance(obj, type) and isinstance(defined_in, str)
            and not allowed_module(defined_in, registry)):
        raise refuse(f"{obj.__qualname__} is defined in {defined_in!r}, none of mmcore's "
                     f"{what} modules nor a module an installed mmcore plugin registers")
    return obj


def _contained(call: Any, refuse: Any) -> Any:
    """``call()``; whatever it raises (``SystemExit``, ``KeyboardInterrupt`` included) is the
    refusal :class:`SpecError`."""
    try:
        return call()
    except (ImportError, AttributeError) as exc:
        raise refuse(f"cannot import it ({exc})") from None
    except BaseException as exc:  # noqa: BLE001 - importing runs code: contain all of it
        raise refuse(f"importing it raised {type(exc).__name__}: {exc}") from None
