"""Command-line options derived from the settings models: a setting's name, type, choices and
help are written once, on its field (`gateway.settings`, `workers.settings`), and an option given
on the command line overrides the environment."""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

ENV_PREFIX = "RPCFLEET_"


def add_setting_options(parser: argparse.ArgumentParser, model: type[BaseSettings],
                        names: Sequence[str], flags: Mapping[str, str] | None = None) -> None:
    """`--name-with-dashes` for each setting in `names` (or the flag `flags` gives it). A boolean
    setting that defaults to true gets `--no-...`, one that defaults to false `--...`. The
    parsed arguments carry which flag each setting has (`setting_flags`), so that an error names
    only flags the command offers."""
    offered: dict[str, str] = {}
    parser.set_defaults(_setting_flags=offered)
    for name in names:
        field = model.model_fields[name]
        flag = (flags or {}).get(name)
        env = f"env {ENV_PREFIX}{name.upper()}"
        help_text = f"{field.description} ({env})" if field.description else env
        kind, choices = _value_type(field.annotation)
        if kind is bool:
            default_true = bool(field.default)
            flag = flag or ("--no-" if default_true else "--") + name.replace("_", "-")
            if default_true and field.description and "; off: " in field.description:
                # A description reads "what it does; off: what then": the flag turns it off.
                on, off = field.description.split("; off: ", 1)
                help_text = f"{off} (default: {on}; {env}=false)"
            parser.add_argument(flag, dest=name, action="store_const", const=not default_true,
                                default=None, help=help_text)
            offered[name] = flag
            continue
        flag = flag or "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, type=kind, choices=choices, default=None,
                            help=help_text)
        offered[name] = flag


def setting_flags(args: argparse.Namespace) -> Mapping[str, str]:
    """The command-line flag of each setting the parsed command offers one for."""
    flags: Mapping[str, str] = getattr(args, "_setting_flags", {})
    return flags


def setting_overrides(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The settings the command line gave (the rest come from the environment)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _first_of(kinds: list[tuple[Any, list[Any] | None]]) -> Callable[[str], Any]:
    """An argparse type for a union (`int | Literal["auto"]`): the first member that reads it."""
    def parse(text: str) -> Any:
        for kind, choices in kinds:
            try:
                value = kind(text)
            except ValueError:
                continue
            if choices is None or value in choices:
                return value
        raise argparse.ArgumentTypeError(f"invalid value: {text!r}")
    return parse


def _parsed_by(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type that keeps the parser's own message."""
    def read(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return read


def _value_type(annotation: Any) -> tuple[Any, list[Any] | None]:
    """The argparse type (and choices) of a field: `int | None` is int, a Literal its values."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _value_type(typing.get_args(annotation)[0])
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(inner) == 1:
            return _value_type(inner[0])
        return _first_of([_value_type(arg) for arg in inner]), None
    if typing.get_origin(annotation) is typing.Literal:
        values = list(typing.get_args(annotation))
        return type(values[0]), values
    if annotation in (int, float, str, bool, Path):
        return annotation, None
    parse = getattr(annotation, "parse", None)
    if callable(parse):  # a value written as text (protocol.fleet.ProcessRange: "1..8")
        return _parsed_by(parse), None
    raise TypeError(f"no command-line option for a setting of type {annotation!r}")
