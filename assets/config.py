"""Dagster run config built from ssl_ops dataclasses, so each setting is declared once (in ssl_ops)."""

from __future__ import annotations

import dataclasses
import typing

import dagster as dg
import pydantic



def config_from_dataclass(dc: type, name: str, defaults: dict | None = None) -> type[dg.Config]:
    """A dagster Config class with the dataclass's fields and types; its defaults are the dataclass's, overridden by
    `defaults` (the configured values). `.to_library()` converts back."""
    hints = typing.get_type_hints(dc)
    defaults = defaults or {}
    fields = {f.name: (hints[f.name], defaults.get(f.name, f.default)) for f in dataclasses.fields(dc)}
    cls = pydantic.create_model(name, __base__=dg.Config, __doc__=dc.__doc__, **fields)
    cls.to_library = lambda self: dc(**{f: getattr(self, f) for f in fields})
    return cls

