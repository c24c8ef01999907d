"""The pieces selectors are built from: query conditions, option parsing and defaults.

:data:`DEFAULT` stands for "not given: use the default, which may come from the
environment" where ``None`` is a value of its own; :func:`constructor_defaults`
reads the default of each constructor parameter, which run manifests leave out
of a selector's identity.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRecordError
from .records import validate_column_name

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT",
    "Condition",
    "Default",
    "accepted_options",
    "columns_option",
    "constructor_defaults",
    "days_option",
    "format_days",
]


class Default:
    """The type of :data:`DEFAULT`, an argument left to its default.

    There is one instance; it is false, and it pickles as itself.
    """

    _instance: Default | None = None

    def __new__(cls) -> Default:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "DEFAULT"


#: An argument not given: the callee resolves it (from the environment, say),
#: so that ``None`` can keep a meaning of its own.
DEFAULT = Default()

# Classes -> their constructor defaults; weak, so classes made at run time can go.
_DEFAULTS: weakref.WeakKeyDictionary[type, dict[str, Any]] = weakref.WeakKeyDictionary()
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def constructor_defaults(cls: type) -> dict[str, Any]:
    """The default of each named parameter of ``cls``'s constructors, most derived first.

    A subclass's ``__init__`` wins over its bases' for a name both have (also
    when the subclass makes it required: then the name has no default).

    Examples
    --------
    >>> class A:
    ...     def __init__(self, size=1, kind="a"): ...
    >>> class B(A):
    ...     def __init__(self, size=2, **kwargs): ...
    >>> constructor_defaults(B)
    {'size': 2, 'kind': 'a'}
    """
    try:
        return dict(_DEFAULTS[cls])
    except (KeyError, TypeError):
        pass
    defaults: dict[str, Any] = {}
    seen: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        try:
            signature = inspect.signature(init) if init is not None else None
        except (TypeError, ValueError):  # a constructor written in C
            signature = None
        for name, parameter in signature.parameters.items() if signature else ():
            if name in seen or parameter.kind in _VARIADIC:
                continue
            seen.add(name)
            if parameter.default is not inspect.Parameter.empty:
                defaults[name] = parameter.default
    try:
        _DEFAULTS[cls] = defaults
    except TypeError:  # not weakly referenceable: no cache
        pass
    return dict(defaults)


def accepted_options(cls: type) -> list[str] | None:
    """The options a selector class takes, or None when it takes any keyword.

    A class that declares ``selection_parameters`` (see
    :class:`~koa_middleware.selector_base.CalibrationSelector`) takes those and
    the named parameters of its constructors (``explain_limit``, say); one that
    does not takes any keyword as an attribute, as the base class does, so its
    options cannot be checked.

    Examples
    --------
    >>> from koa_middleware.selectors import NearestInTimeSelector
    >>> accepted_options(NearestInTimeSelector)
    ['cal_type', 'explain_limit', 'master_only', 'match', 'max_days', 'origin']
    """
    declared = getattr(cls, "selection_parameters", None)
    if declared is None:
        return None
    names = set(declared)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        try:
            signature = inspect.signature(init) if init is not None else None
        except (TypeError, ValueError):  # a constructor written in C
            continue
        for name, parameter in signature.parameters.items() if signature else ():
            if name != "self" and parameter.kind not in _VARIADIC:
                names.add(name)
    return sorted(names)


@dataclass(frozen=True)
class Condition:
    """One condition of a selector's query.

    Attributes
    ----------
    label : str
        How a person reads it, e.g. ``"spectrograph = 'spec_a'"``.
    sql : str
        The SQL fragment, with ``:name`` placeholders only.
    params : dict
        The values of its placeholders.
    """

    label: str
    sql: str
    params: dict = field(default_factory=dict)


def columns_option(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Column names from a sequence or a comma-separated string, each validated.

    Examples
    --------
    >>> columns_option("spectrograph, instrument_era")
    ('spectrograph', 'instrument_era')
    """
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return tuple(validate_column_name(column) for column in value)


def days_option(value: Any, name: str) -> float | None:
    """A number of days >= 0 from an option (a number or text), or None for none.

    Raises
    ------
    InvalidRecordError
        If the value is not a number of days >= 0.
    """
    if value is None or value == "" or (isinstance(value, str) and value.lower() == "none"):
        return None
    try:
        days = float(value)
    except (TypeError, ValueError):
        days = -1.0
    if days < 0:
        raise InvalidRecordError(f"Invalid {name} {value!r}: give a number of days >= 0.")
    return days


def format_days(days: float) -> str:
    """A time distance a person reads at a glance: ``'2.0 h before'``, ``'3.5 d after'``."""
    size = abs(days)
    side = "before" if days < 0 else "after"
    if size < 1 / 24:
        text = f"{size * 1440:.1f} min"
    elif size < 2:
        text = f"{size * 24:.1f} h"
    else:
        text = f"{size:.1f} d"
    return f"{text} {side}" if size else "at the same time as"
