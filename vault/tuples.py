"""``NamedTuple`` for the modules on the ``cvault secret get`` path, built without compiling code.

``typing.NamedTuple`` turns each field's annotation into a ``ForwardRef`` (under ``from __future__
import annotations`` every annotation is a string, and ``ForwardRef`` compiles it) and
``collections.namedtuple`` compiles a ``__new__`` for every class: about a million instructions per
class, ~20 classes on the path, 6 % of a whole ``cvault secret get`` (docs/performance.md). The
classes made here are the same kind of object (a ``tuple`` subclass with ``_fields``,
``_field_defaults``, ``_make``, ``_replace``, ``_asdict``, field properties, the same ``repr``,
equality, hashing and pickling); ``__new__`` binds arguments in Python instead of compiled code.
Type checkers see ``typing.NamedTuple`` itself. ``tests/core/test_fast_paths.py`` checks the
behaviour matches ``typing.NamedTuple``'s.

Usage, exactly as ``typing.NamedTuple``::

    from vault.tuples import NamedTuple

    class ClientRow(NamedTuple):
        id: str
        name: str
        state: str = "active"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from _collections import _tuplegetter  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other interpreters
    from operator import itemgetter as _itemgetter

    def _tuplegetter(index: int, doc: str) -> Any:
        return property(_itemgetter(index), doc=doc)


_MISSING = object()
#: names typing.NamedTuple refuses to let a class override
_RESERVED = frozenset(
    {
        "__new__",
        "__init__",
        "__slots__",
        "__getnewargs__",
        "_fields",
        "_field_defaults",
        "_make",
        "_replace",
        "_asdict",
        "_source",
    }
)


def _make_class(typename: str, namespace: dict[str, Any]) -> type:
    annotations = dict(namespace.get("__annotations__", {}))
    fields = tuple(annotations)
    defaults: dict[str, Any] = {}
    for name in fields:
        if name.startswith("_"):
            raise ValueError(f"Field names cannot start with an underscore: {name!r}")
        if name in namespace:
            defaults[name] = namespace[name]
        elif defaults:
            raise TypeError(
                f"Non-default namedtuple field {name} cannot follow default field"
                f"{'s' if len(defaults) > 1 else ''} {', '.join(defaults)}"
            )
    count = len(fields)
    index = {name: i for i, name in enumerate(fields)}
    new_tuple = tuple.__new__

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not kwargs and len(args) == count:
            return new_tuple(cls, args)
        if len(args) > count:
            raise TypeError(
                f"{typename}.__new__() takes {count + 1} positional arguments but {len(args) + 1} were given"
            )
        values = list(args) + [_MISSING] * (count - len(args))
        for key, value in kwargs.items():
            i = index.get(key)
            if i is None:
                raise TypeError(f"{typename}.__new__() got an unexpected keyword argument {key!r}")
            if i < len(args):
                raise TypeError(f"{typename}.__new__() got multiple values for argument {key!r}")
            values[i] = value
        missing = []
        for i, value in enumerate(values):
            if value is _MISSING:
                name = fields[i]
                if name in defaults:
                    values[i] = defaults[name]
                else:
                    missing.append(name)
        if missing:
            names = ", ".join(map(repr, missing))
            raise TypeError(f"{typename}.__new__() missing {len(missing)} required argument(s): {names}")
        return new_tuple(cls, values)

    __new__.__doc__ = f"Create new instance of {typename}({', '.join(fields)})"

    def _make(cls: Any, iterable: Any) -> Any:
        result = new_tuple(cls, iterable)
        if len(result) != count:
            raise TypeError(f"Expected {count} arguments, got {len(result)}")
        return result

    def _replace(self, /, **kwargs: Any) -> Any:
        result = self._make(map(kwargs.pop, fields, self))
        if kwargs:
            raise ValueError(f"Got unexpected field names: {list(kwargs)!r}")
        return result

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}("
            + ", ".join(f"{n}={v!r}" for n, v in zip(fields, self, strict=True))
            + ")"
        )

    def _asdict(self) -> dict[str, Any]:
        return dict(zip(fields, self, strict=True))

    def __getnewargs__(self) -> tuple[Any, ...]:
        return tuple(self)

    body: dict[str, Any] = {
        "__doc__": f"{typename}({', '.join(fields)})",
        "__slots__": (),
        "_fields": fields,
        "_field_defaults": defaults,
        "__new__": __new__,
        "_make": classmethod(_make),
        "_replace": _replace,
        "__repr__": __repr__,
        "_asdict": _asdict,
        "__getnewargs__": __getnewargs__,
        "__match_args__": fields,
    }
    for i, name in enumerate(fields):
        body[name] = _tuplegetter(i, f"Alias for field number {i}")
    for key, value in namespace.items():
        if key in _RESERVED:
            raise AttributeError(f"Cannot overwrite NamedTuple attribute {key}")
        if key not in fields and key not in ("__annotations__", "__orig_bases__"):
            body[key] = value
    body["__annotations__"] = annotations
    qualname = namespace.get("__qualname__", typename)
    for function in (__new__, _make, _replace, __repr__, _asdict, __getnewargs__):
        function.__qualname__ = f"{qualname}.{function.__name__}"
    return type(typename, (tuple,), body)


class _NamedTupleMeta(type):
    def __new__(mcs, typename: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> Any:
        if namespace.get("_root_", False):
            return super().__new__(mcs, typename, bases, namespace)
        return _make_class(typename, namespace)


if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple
else:

    class NamedTuple(metaclass=_NamedTupleMeta):
        """Base of a named tuple class: see the module's docstring."""

        _root_ = True
