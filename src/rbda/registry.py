"""The training methods and backbones, as their modules declare themselves (standard library only).

A method is one module of :mod:`rbda.learn.methods` that assigns ``METHOD = MethodDeclaration(...)``
at its top level (its name, display label, whether it runs once per lambda of the grid, its own
settings, its Slurm resources default, its plot style and its class); a backbone is one module of
:mod:`rbda.learn.backbones` that assigns ``BACKBONE = BackboneDeclaration(...)``. Modules outside the
package are registered by naming them, comma-separated, in the environment variable
:data:`EXTRA_MODULES_VARIABLE` (importable module names; each declares a method or a backbone).

The workflow imports this module when it plans jobs, so it must not import torch (about 3 s here per
``snakemake`` start): declarations are read from the modules' source without running it (a
declaration is a call of :class:`MethodDeclaration` / :class:`BackboneDeclaration` with literal
arguments and :class:`Setting` calls), and :func:`method_class` / :func:`backbone_class` check, when
they import a module to train, that the declaration it executes is the one read.

Everything else that names methods or backbones reads the lists here: :data:`METHODS`,
:data:`ADAPTATION_METHODS`, :data:`LAMBDA_METHODS`, :data:`METHOD_LABELS`, :data:`SAVE_MODEL_CHOICES`,
:data:`METHOD_COLOURS`, :data:`METHOD_LINE_STYLES`, :data:`METHOD_RESOURCES`, :data:`BACKBONES`.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import math
import os
import pkgutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rbda.errors import ConfigKeyError, RbdaError, SettingError

#: Environment variable naming extra method or backbone modules (``mypkg.mymethod,other``).
EXTRA_MODULES_VARIABLE = "RBDA_EXTRA_MODULES"
#: The packages whose modules are discovered.
METHODS_PACKAGE = "rbda.learn.methods"
BACKBONES_PACKAGE = "rbda.learn.backbones"
#: Suffix of a lambda method's selected runs (``mme-selected``; ``rbda select-lambda``).
SELECTED_SUFFIX = "-selected"
#: The method that trains from scratch on one survey; every other method adapts its model.
BASELINE = "baseline"


@dataclass(frozen=True)
class Setting:
    """One setting of one method: its name (``rbda train --NAME-WITH-DASHES``, config key
    ``method_settings.METHOD.NAME``), default, help and bounds (numbers) or choices."""

    name: str
    default: Any
    help: str
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def bounds(self) -> str:
        """``> 0``, ``in [0, 1]``: the bounds in words ("" when none)."""
        return describe_bounds(self.gt, self.ge, self.lt, self.le)

    def check(self, value: Any, where: str) -> Any:
        """``value`` if it is valid, else :class:`SettingError` naming ``where``."""
        return check_value(where, value, self.default, self.gt, self.ge, self.lt, self.le, self.choices)


@dataclass(frozen=True)
class MethodDeclaration:
    """What a training method module declares about itself (``METHOD = MethodDeclaration(...)``).

    ``order``: its place in tables and figures (the baseline first, then the published methods);
    ``lambda_grid``: it runs once per lambda of the config's grid, then one run is selected;
    ``mem_mb``/``runtime``: its training jobs' default requests (minutes; config ``resources``
    overrides them); ``colour``/``line_style``: its curves in the figures.
    """

    name: str
    label: str
    cls: str
    order: int
    lambda_grid: bool = False
    settings: tuple[Setting, ...] = ()
    mem_mb: int = 8000
    runtime: int = 360
    colour: str = "0.5"
    line_style: str = "-"
    module: str = field(default="", compare=False)  # filled in by the registry

    def setting(self, name: str) -> Setting:
        for s in self.settings:
            if s.name == name:
                return s
        raise KeyError(name)


@dataclass(frozen=True)
class BackboneDeclaration:
    """What a backbone module declares (``BACKBONE = BackboneDeclaration(...)``): its name
    (``training.model``, ``rbda train --backbone``), its class, a one-line help and its order."""

    name: str
    cls: str
    help: str
    order: int
    module: str = field(default="", compare=False)


def describe_bounds(gt=None, ge=None, lt=None, le=None) -> str:
    """``> 0``, ``in [0, 1)``, ``>= 1``: bounds in words."""
    low = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else None
    high = f"{le}]" if le is not None else f"{lt})" if lt is not None else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return (">= " if low[0] == "[" else "> ") + low[1:]
    if high:
        return ("<= " if high[-1] == "]" else "< ") + high[:-1]
    return ""


def check_value(name: str, value: Any, default: Any, gt=None, ge=None, lt=None, le=None,
                choices: tuple | None = None) -> Any:
    """``value`` when it fits a setting of that default, bounds and choices; else :class:`SettingError`."""
    if choices is not None:
        if value not in choices:
            raise SettingError(name, " or ".join(map(str, choices)), value)
        return value
    if default is False or default is True:
        if not isinstance(value, bool):
            raise SettingError(name, "true or false", value)
        return value
    if value is None and default is None:
        return value
    bounds = describe_bounds(gt, ge, lt, le)
    integer = isinstance(default, int) or default is None
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise SettingError(name, f"an integer {bounds}".rstrip(), value)
    if not integer and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        raise SettingError(name, f"a finite number {bounds}".rstrip(), value)
    ok = ((gt is None or value > gt) and (ge is None or value >= ge)
          and (lt is None or value < lt) and (le is None or value <= le))
    if not ok:
        raise SettingError(name, f"a value {bounds}", value)
    return value


# --- reading declarations without running the module -------------------------------------

_CONSTRUCTORS = {"MethodDeclaration": MethodDeclaration, "BackboneDeclaration": BackboneDeclaration,
                 "Setting": Setting}
_DECLARATIONS = {"METHOD": MethodDeclaration, "BACKBONE": BackboneDeclaration}


def _evaluate(node: ast.AST, where: str) -> Any:
    """A literal, or a call of a declaration class with literal arguments."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CONSTRUCTORS:
        args = [_evaluate(a, where) for a in node.args]
        kwargs = {k.arg: _evaluate(k.value, where) for k in node.keywords}
        return _CONSTRUCTORS[node.func.id](*args, **kwargs)
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(e, where) for e in node.elts)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise RbdaError(f"{where}: a declaration's arguments must be literals (numbers, strings, tuples) "
                        f"or Setting(...) calls, got {ast.unparse(node)!r}") from None


def module_source(module: str) -> Path:
    """The source file of an importable module, found without importing it (rbda's own modules by
    their place in the package; others with :func:`importlib.util.find_spec`, which imports their
    parent packages)."""
    if module.split(".")[0] == "rbda":
        path = _PACKAGE_ROOT.joinpath(*module.split(".")[1:]).with_suffix(".py")
        if path.is_file():
            return path
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        spec, reason = None, str(exc)
    else:
        reason = "no such module"
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise RbdaError(f"{EXTRA_MODULES_VARIABLE} / registry: cannot find the source of module {module!r} ({reason})")
    return Path(spec.origin)


def read_declarations(module: str, path: Path | None = None) -> dict:
    """``{"METHOD": MethodDeclaration, "BACKBONE": ...}``: what a module's source declares at top level."""
    path = path or module_source(module)
    tree = ast.parse(path.read_text(), filename=str(path))
    found = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in _DECLARATIONS):
            kind = node.targets[0].id
            value = _evaluate(node.value, f"{path}: {kind}")
            if not isinstance(value, _DECLARATIONS[kind]):
                raise RbdaError(f"{path}: {kind} must be a {_DECLARATIONS[kind].__name__}(...), got {value!r}")
            found[kind] = replace(value, module=module)
    return found


_PACKAGE_ROOT = Path(__file__).resolve().parent


def _package_modules(package: str) -> list[str]:
    """The modules of one of rbda's packages (found in its folder: importing it is not needed)."""
    folder = _PACKAGE_ROOT.joinpath(*package.split(".")[1:])
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(folder)]) if not m.ispkg]


def extra_modules() -> list[str]:
    """The modules named in :data:`EXTRA_MODULES_VARIABLE`."""
    return [m.strip() for m in os.environ.get(EXTRA_MODULES_VARIABLE, "").split(",") if m.strip()]


@dataclass(frozen=True)
class Registry:
    """Every declared method and backbone, in their declared order."""

    methods: dict[str, MethodDeclaration]
    backbones: dict[str, BackboneDeclaration]


def discover(extra: list[str] | None = None) -> Registry:
    """Read the declarations of the package's method and backbone modules and of ``extra``
    (default: :func:`extra_modules`). Two declarations of one name are an error."""
    modules = _package_modules(METHODS_PACKAGE) + _package_modules(BACKBONES_PACKAGE)
    modules += extra_modules() if extra is None else extra
    methods: dict[str, MethodDeclaration] = {}
    backbones: dict[str, BackboneDeclaration] = {}
    for module in dict.fromkeys(modules):
        for kind, declaration in read_declarations(module).items():
            table = methods if kind == "METHOD" else backbones
            other = table.get(declaration.name)
            if other is not None:
                raise RbdaError(f"{kind.lower()} {declaration.name!r} is declared twice: in {other.module} and {module}")
            if kind == "METHOD" and (not declaration.name.isalnum() or declaration.name != declaration.name.lower()):
                raise RbdaError(f"{module}: method name {declaration.name!r}: lower-case letters and digits "
                                "expected (names are parts of paths, rule names and NAME-selected)")
            table[declaration.name] = declaration
    if BASELINE not in methods:
        raise RbdaError(f"no method module declares {BASELINE!r}")
    return Registry(dict(sorted(methods.items(), key=lambda kv: (kv[1].order, kv[0]))),
                    dict(sorted(backbones.items(), key=lambda kv: (kv[1].order, kv[0]))))


REGISTRY = discover()

#: Every training method, as ``rbda train --method`` names it, in order (the baseline first).
METHODS = tuple(REGISTRY.methods)
#: Methods that adapt a (source, split) baseline to a target survey.
ADAPTATION_METHODS = tuple(m for m in METHODS if m != BASELINE)
#: Adaptation methods run once per lambda of the grid, then selected.
LAMBDA_METHODS = tuple(m for m, d in REGISTRY.methods.items() if d.lambda_grid)
#: What the workflow can keep model files of (config ``save_models``; baselines' are always kept).
SAVE_MODEL_CHOICES = (*ADAPTATION_METHODS, *(f"{m}{SELECTED_SUFFIX}" for m in LAMBDA_METHODS))
#: Display names of the methods.
METHOD_LABELS = {m: d.label for m, d in REGISTRY.methods.items()}
#: Plot colour and line style of each method.
METHOD_COLOURS = {m: d.colour for m, d in REGISTRY.methods.items()}
METHOD_LINE_STYLES = {m: d.line_style for m, d in REGISTRY.methods.items()}
#: Default requests of each method's training jobs (config ``resources.METHOD`` overrides them).
METHOD_RESOURCES = {m: {"mem_mb": d.mem_mb, "runtime": d.runtime} for m, d in REGISTRY.methods.items()}
#: Feature extractors a model can have (``training.model``; ``rbda train --backbone``).
BACKBONES = tuple(REGISTRY.backbones)


def method(name: str) -> MethodDeclaration:
    """The declaration of method ``name``; :class:`SettingError` naming ``method`` if none."""
    if name not in REGISTRY.methods:
        raise SettingError("method", f"one of {', '.join(METHODS)}", name)
    return REGISTRY.methods[name]


def method_settings(name: str, given: dict | None = None, where: str = "method_settings") -> dict:
    """Method ``name``'s settings: its declared defaults updated with ``given``, checked.

    Errors name ``where.NAME.SETTING`` (a config key) for an unknown setting or a bad value.
    """
    declaration = method(name)
    given = dict(given or {})
    settings = {}
    for s in declaration.settings:
        settings[s.name] = s.check(given.pop(s.name, s.default), f"{where}.{name}.{s.name}")
    if given:
        known = ", ".join(s.name for s in declaration.settings) or "none"
        raise ConfigKeyError(f"{where}.{name}", f"config key '{where}.{name}': unknown setting(s) "
                             f"{', '.join(map(repr, given))} of method {name!r} (its settings: {known})")
    return settings


def check_names(names, choices, key: str) -> list[str]:
    """``names`` (a list of distinct names among ``choices``) or :class:`ConfigKeyError` naming ``key``."""
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
        raise ConfigKeyError(key, f"config key {key!r}: a list of names among {', '.join(choices)} expected, got {names!r}")
    unknown = [n for n in names if n not in choices]
    if unknown:
        raise ConfigKeyError(key, f"config key {key!r}: unknown name(s) {', '.join(map(repr, unknown))}; "
                             f"expected names among {', '.join(choices)} (rbda.registry)")
    return list(names)


def check_method_keys(mapping: dict, key: str) -> dict:
    """A config mapping keyed by method names (``training_by_method``, ``resources``, ``method_settings``)."""
    check_names(list(mapping), METHODS, key)
    return mapping


def _imported(declaration, kind: str):
    module = importlib.import_module(declaration.module)
    executed = getattr(module, kind, None)
    if executed != declaration:
        raise RbdaError(f"{declaration.module}: the {kind} it executes ({executed!r}) is not the one read from its "
                        f"source ({declaration!r}); declare it with literal arguments")
    return getattr(module, declaration.cls)


def method_class(name: str):
    """The :class:`~rbda.learn.methods.base.TrainingMethod` subclass of method ``name`` (imports it)."""
    cls = _imported(method(name), "METHOD")
    if getattr(cls, "name", None) != name:
        raise RbdaError(f"{method(name).module}.{cls.__name__}.name is {getattr(cls, 'name', None)!r}, not {name!r}")
    return cls


def backbone_class(name: str):
    """The ``torch.nn.Module`` class of backbone ``name`` (imports it)."""
    if name not in REGISTRY.backbones:
        raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES}")
    return _imported(REGISTRY.backbones[name], "BACKBONE")


def scoped_modules(module: str) -> list[str]:
    """``module`` and the registered method/backbone modules it imports, transitively (sorted):
    the declaring modules whose code a run of ``module``'s method (or backbone) executes."""
    declaring = {d.module for d in (*REGISTRY.methods.values(), *REGISTRY.backbones.values())}
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        tree = ast.parse(module_source(current).read_text())
        for node in ast.walk(tree):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if isinstance(node, ast.ImportFrom) and node.module:
                names += [f"{node.module}.{a.name}" for a in node.names]
            todo += [n for n in names if n in declaring]
    return sorted(seen)
