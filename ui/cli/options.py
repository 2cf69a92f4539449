"""Command-line options made from a config dataclass, so every default is written once: in the dataclass.

:func:`config_options` adds one option per field of a frozen config dataclass to a typer command:
``--field-name`` (booleans also get ``--no-field-name``), its help from ``field(metadata={"help": ...})``
and ``[default: ...]`` from the field's default or ``default_factory``. Every option defaults to None
(not given), and the command receives the config built from the options that were given, so a flag
left out keeps the dataclass default. The dataclass validates in ``__post_init__``; under
:func:`ui.errors.friendly` its error is one ``error:`` line and exit status 2.

:class:`Flag` says where the command line differs from the plain field: other spellings (``-k``),
an environment variable, a positional argument, a flag required although the field has a default,
a conversion of the typed value.

>>> from dataclasses import dataclass, field
>>> from typer.testing import CliRunner
>>> from ui.errors import friendly
>>> @dataclass(frozen=True)
... class Settings:
...     k: int = field(default=5, metadata={"help": "chunks per question"})
...     mode: str = field(default="hybrid", metadata={"help": "hybrid | dense | bm25"})
...     def __post_init__(self):
...         if self.k < 1:
...             raise ValueError(f"k={self.k} must be >= 1")
>>> app = typer.Typer()
>>> @app.command()
... @friendly
... @config_options(Settings, flags={"k": Flag(names=("--k", "-k"))})
... def show(config: Settings) -> None:
...     print(config)
>>> print(CliRunner().invoke(app, ["-k", "3"]).output.strip())
Settings(k=3, mode='hybrid')
>>> result = CliRunner().invoke(app, ["--k", "0"])
>>> result.exit_code, result.output.strip()
(2, 'error: k=0 must be >= 1')
>>> "[default: 5]" in CliRunner().invoke(app, ["--help"]).output
True
"""
from __future__ import annotations

import collections.abc
import dataclasses
import functools
import inspect
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import typer

from index.config import KB_ENV

SCALARS = (bool, int, float, str, Path)


@dataclass(frozen=True)
class Flag:
    """How one config field is spelled on the command line, where that differs from ``--field-name``."""

    names: tuple[str, ...] = ()  # e.g. ("--k", "-k"); (): --field-name (and --no-field-name for booleans)
    envvar: str | None = None  # read the value from this environment variable when the flag is not given
    argument: bool = False  # a positional argument (variadic for tuple fields) instead of an option
    required: bool = False  # must be given although the field has a default (e.g. the file to write)
    convert: Callable[[Any], Any] | None = None  # the value typer parsed -> the field's value


KB_FLAG = Flag(envvar=KB_ENV)  # --kb FOLDER, else $QDA_KB, else the dataclass default
K_FLAG = Flag(names=("--k", "-k"))


def config_options(cls: type, *, include: Iterable[str] | None = None, exclude: Iterable[str] = (),
                   flags: Mapping[str, Flag] | None = None, into: str = "config",
                   build: Callable[..., Any] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: an option for each field of ``cls`` (those in ``include``, in its order; none in ``exclude``).

    The options take the place of the command's parameter ``into`` (in ``--help`` too), and the
    command is called with ``into=build(**given)``: ``given`` holds the options given (None or an
    empty list: not given; lists become tuples, then ``Flag.convert`` applies); ``build`` defaults to
    ``cls``, whose ``__post_init__`` validates; ``build=dict`` passes the given values alone, e.g. to
    lay them over a file. Raises TypeError at decoration time for an unknown field name, a field
    without help metadata, a command without ``into`` or one that already has an option's name.
    """
    flags = dict(flags or {})
    chosen = _chosen_fields(cls, include, exclude, flags)
    hints = typing.get_type_hints(cls)
    params = {f.name: _parameter(f, hints[f.name], flags.get(f.name, Flag())) for f in chosen}
    converters = {name: flags[name].convert for name in params if name in flags and flags[name].convert}
    make = build or cls

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        mine = inspect.signature(fn, eval_str=True).parameters
        clash = sorted(set(mine) & set(params))
        if into not in mine or clash:
            raise TypeError(f"{fn.__name__} needs a parameter {into!r} and none named as a field of {cls.__name__} "
                            f"(clashes: {clash})")

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in params}
            values = {name: _value(v, converters.get(name)) for name, v in given.items() if v not in (None, [], ())}
            return fn(**kwargs, **{into: make(**values)})

        # The fields' options where ``into`` was; typer passes everything by keyword, so all are keyword-only.
        ordered = [q for p in mine.values() for q in (params.values() if p.name == into else [p])]
        signature = inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in ordered])
        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        return wrapper

    return decorate


def default_of(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls`` (``default_factory`` called); MISSING when none.

    >>> from finetune.config import TrainConfig
    >>> default_of(TrainConfig, "max_length"), default_of(TrainConfig, "trl")
    (1024, {})
    """
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        raise TypeError(f"{cls.__name__} has no field {name!r}")
    return _field_default(f)


def _chosen_fields(cls: type, include: Iterable[str] | None, exclude: Iterable[str],
                   flags: Mapping[str, Flag]) -> list[dataclasses.Field]:
    every = {f.name: f for f in dataclasses.fields(cls)}
    wanted = list(every) if include is None else list(include)
    unknown = sorted((set(wanted) | set(exclude) | set(flags)) - set(every))
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {unknown}")
    chosen = [every[name] for name in wanted if name not in set(exclude)]
    undocumented = [f.name for f in chosen if not f.metadata.get("help")]
    if undocumented:
        raise TypeError(f"{cls.__name__} fields {undocumented} have no help: give them "
                        "field(..., metadata={'help': ...})")
    return chosen


def _parameter(f: dataclasses.Field, hint: Any, flag: Flag) -> inspect.Parameter:
    required = flag.required or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    kind = _option_type(hint)
    annotation = kind if required else Optional[kind]
    help_text = _help_text(f, flag, required)
    if flag.argument:
        info = typer.Argument(... if required else None, help=help_text, show_default=False)
    else:
        info = typer.Option(... if required else None, *flag.names, envvar=flag.envvar, help=help_text,
                            show_default=False)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def _option_type(hint: Any) -> Any:
    """The type typer parses for a field type: scalars as they are, tuples and mappings as repeated values.

    >>> _option_type(int), _option_type(Path | str), _option_type(tuple[Path, ...] | None)
    (<class 'int'>, <class 'pathlib.Path'>, list[pathlib.Path])
    """
    if hint in SCALARS:
        return hint
    origin, args = typing.get_origin(hint), [a for a in typing.get_args(hint) if a is not type(None)]
    if origin is tuple:  # repeatable: --data A --data B
        return list[args[0] if args and args[0] in SCALARS else str]
    if origin in (collections.abc.Mapping, dict):  # KEY=VALUE items; Flag.convert makes the mapping
        return list[str]
    if args and origin in (typing.Union, types.UnionType):
        return _option_type(args[0])
    raise TypeError(f"no command-line type for field type {hint!r}")


def _help_text(f: dataclasses.Field, flag: Flag, required: bool) -> str:
    """The field's help, then ``[default: ...]`` (escaped: typer reads help as rich markup)."""
    text = f.metadata["help"].replace("[", "\\[")
    if required:
        return text
    shown = _shown_default(_field_default(f), f, flag)
    return text if shown is None else f"{text} \\[default: {shown}]"


def _field_default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _shown_default(value: Any, f: dataclasses.Field, flag: Flag) -> str | None:
    """How a default reads in ``--help``; None for None and empty values (the help says what they mean)."""
    if value is None or value == () or value == {} or value == "":
        return None
    if isinstance(value, bool):
        name = (flag.names[0] if flag.names else "--" + f.name.replace("_", "-")).lstrip("-")
        return name if value else f"no-{name}"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _value(value: Any, convert: Callable[[Any], Any] | None) -> Any:
    value = tuple(value) if isinstance(value, list) else value
    return convert(value) if convert else value
