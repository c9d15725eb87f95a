"""Typed values in and out of the journal: one converter for steps, workflows and the CLI.

The journal holds JSON. A value of a richer type is encoded to JSON before it is
journaled (:func:`encode`) and decoded back to the annotated type when it is
read (:func:`decode`), so the first run and every replay see the same type:

- pydantic v2 models (``model_dump(mode="json")`` / ``model_validate``; pydantic
  is never imported here: a model exists only when its user imported pydantic),
- dataclasses (their fields, recursively),
- ``datetime`` (timezone-aware only, ISO 8601), ``date``, ``UUID``,
  ``Decimal`` (as a JSON string, exact), enums (their value),
- ``list[...]``, ``dict[str, ...]``, ``tuple[...]``, ``Optional`` and ``Union`` of
  these. (A set stays refused: it has no order, so no one JSON form.)

A function whose annotations are all plain JSON types (or absent) gets no
:class:`Conversion` (``conversion_of`` returns None), so its calls go the
plain way with nothing added.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import inspect
import sys
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from . import serde
from .errors import SerializationError

_PLAIN_TYPES = frozenset({str, int, float, bool, type(None), dict, list, object})
_EMPTY = inspect.Parameter.empty


# ---------------------------------------------------------------- encoding


def encode(value: Any, what: str) -> Any:
    """``value`` as JSON data: typed values turned into their JSON form, recursively.
    ``SerializationError`` names ``what`` and the value when a part cannot be encoded
    (a naive datetime); other unknown objects are left for the JSON encoder to refuse."""
    kind = type(value)
    if kind in (str, int, float, bool) or value is None:
        return value
    if kind is dict:
        return {key: encode(item, what) for key, item in value.items()}
    if kind in (list, tuple):
        return [encode(item, what) for item in value]
    if isinstance(value, enum.Enum):
        return encode(value.value, what)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise SerializationError(
                f"{what}: the datetime {value!r} has no timezone; journaled datetimes must be "
                "timezone-aware (datetime.now(timezone.utc), or .replace(tzinfo=...)) so that "
                "a replay in another timezone reads the same instant"
            )
        return value.isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if _is_pydantic_model(kind):
        return encode(value.model_dump(mode="json"), what)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: encode(getattr(value, field.name), what)
            for field in dataclasses.fields(value)
        }
    return value


def _is_pydantic_model(kind: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(kind, type) and issubclass(kind, pydantic.BaseModel)


def journal_arguments(
    args: Sequence[Any], kwargs: Mapping[str, Any], what: str, *fmt: object
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Arguments as JSON data for the store: as they are when they are plain JSON (checked,
    nothing copied), else encoded; ``SerializationError`` naming ``what`` (``what % fmt``
    when arguments follow, formatted only when needed) otherwise."""
    try:
        serde.dumps([args, kwargs], what, *fmt)
        return tuple(args), dict(kwargs)
    except SerializationError:
        what = what % fmt if fmt else what
        encoded_args, encoded_kwargs = encode([list(args), dict(kwargs)], what)
        serde.dumps([encoded_args, encoded_kwargs], what)
        return tuple(encoded_args), encoded_kwargs


def journal_value(value: Any, what: str) -> Any:
    """``value`` as the JSON data the store will hold (read back from its bytes)."""
    return journal_encoded(value, what)[0]


def journal_encoded(value: Any, what: str, *fmt: object) -> tuple[Any, bytes]:
    """``journal_value``, and the bytes it was read back from: what the store keeps, so
    that the value is encoded once (:data:`serde.Fragment`). ``what % fmt`` when arguments
    follow, formatted only when needed."""
    if value is None:  # (its b"null" would take serde's slow look for NaN)
        return None, b"null"
    try:
        encoded = serde.dumps(value, what, *fmt)
    except SerializationError:
        what = what % fmt if fmt else what
        encoded = serde.dumps(encode(value, what), what)
    return serde.loads(encoded), encoded


# ---------------------------------------------------------------- decoding


def decode(data: Any, annotation: Any, what: str) -> Any:
    """JSON ``data`` as a value of ``annotation``; ``SerializationError`` naming ``what``
    when the data does not fit the type."""
    try:
        return _decode(data, annotation)
    except SerializationError:
        raise
    except (TypeError, ValueError, KeyError, InvalidOperation) as exc:
        raise SerializationError(
            f"{what}: {_short(data)} cannot be read as {_type_name(annotation)}: {exc}"
        ) from None


def _decode(data: Any, annotation: Any) -> Any:
    if annotation is _EMPTY or annotation is Any or annotation in _PLAIN_TYPES:
        return data
    origin = typing.get_origin(annotation)
    if origin is not None:
        return _decode_generic(data, annotation, origin)
    if not isinstance(annotation, type):
        return data  # a TypeVar, a NewType...: nothing to convert to
    if data is None:
        return None  # a missing value stays missing; the function's own checks judge it
    if issubclass(annotation, enum.Enum):
        return annotation(data)
    if issubclass(annotation, _dt.datetime):
        value = annotation.fromisoformat(data)
        if value.tzinfo is None:
            raise ValueError("the stored datetime has no timezone")
        return value
    if issubclass(annotation, _dt.date):
        return annotation.fromisoformat(data)
    if issubclass(annotation, uuid.UUID):
        return annotation(data)
    if issubclass(annotation, Decimal):
        if type(data) not in (str, int):
            raise TypeError("a Decimal is journaled as a string")
        return annotation(data)
    if _is_pydantic_model(annotation):
        return annotation.model_validate(data)  # type: ignore[attr-defined]
    if dataclasses.is_dataclass(annotation):
        return _decode_dataclass(data, annotation)
    return data


def _decode_generic(data: Any, annotation: Any, origin: Any) -> Any:
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return _decode_union(data, args)
    if origin is typing.Literal or data is None:
        return data
    if origin is typing.Annotated:
        return _decode(data, args[0])
    if origin is list or origin is Sequence:
        item = args[0] if args else Any
        return [_decode(value, item) for value in _sequence(data)]
    if origin is tuple:
        items = list(_sequence(data))
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(value, args[0]) for value in items)
        if args and len(args) != len(items):
            raise ValueError(f"expected {len(args)} items, got {len(items)}")
        return tuple(_decode(v, a) for v, a in zip(items, args or [Any] * len(items), strict=False))
    if origin in (dict, Mapping):
        if type(data) is not dict:
            raise TypeError(f"expected an object, got {type(data).__name__}")
        value_type = args[1] if len(args) == 2 else Any
        return {key: _decode(value, value_type) for key, value in data.items()}
    return data


def _decode_union(data: Any, args: tuple[Any, ...]) -> Any:
    if data is None and type(None) in args:
        return None
    errors = []
    for option in args:
        if option is type(None):
            continue
        if _fits_plainly(data, option):
            return data
    for option in args:
        if option is type(None) or option in _PLAIN_TYPES:
            continue  # a plain type fits as it is, or not at all (tested above)
        try:
            return _decode(data, option)
        except (TypeError, ValueError, KeyError, InvalidOperation) as exc:
            errors.append(f"{_type_name(option)}: {exc}")  # (pydantic's errors: ValueError)
    raise ValueError("fits none of the union's types (" + "; ".join(errors) + ")")


def _fits_plainly(data: Any, option: Any) -> bool:
    """True when ``data`` already is a value of the plain type ``option``."""
    if option in (str, int, float, bool):
        return type(data) is option or (option is float and type(data) is int)
    if option in (dict, list):
        return type(data) is option
    return option is Any or option is object


def _decode_dataclass(data: Any, cls: type) -> Any:
    if type(data) is not dict:
        raise TypeError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
    hints = _type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        if field.name in data:
            values[field.name] = _decode(data[field.name], hints.get(field.name, Any))
    return cls(**values)


def _sequence(data: Any) -> list[Any]:
    if type(data) not in (list, tuple):
        raise TypeError(f"expected an array, got {type(data).__name__}")
    return list(data)


# ---------------------------------------------------------------- per function


def needs_conversion(annotation: Any) -> bool:
    """True when values of ``annotation`` are not plain JSON as they are."""
    if annotation is _EMPTY or annotation is Any or annotation in _PLAIN_TYPES:
        return False
    origin = typing.get_origin(annotation)
    if origin is not None:
        if origin is typing.Literal:
            return False
        if origin is tuple:
            return True  # read back from a JSON array: converted to a tuple
        return any(needs_conversion(arg) for arg in typing.get_args(annotation) if arg != ...)
    if not isinstance(annotation, type):
        return False
    return (
        issubclass(annotation, (enum.Enum, _dt.date, uuid.UUID, Decimal))
        or dataclasses.is_dataclass(annotation)
        or _is_pydantic_model(annotation)
    )


@dataclasses.dataclass(frozen=True)
class Conversion:
    """How one function's typed parameters and result cross the journal."""

    name: str
    signature: inspect.Signature
    params: dict[str, Any]  # the parameters whose values need conversion, by name
    result: Any  # the return annotation, or _EMPTY when it needs no conversion

    def decode_arguments(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], skip: int
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments read from JSON, as the parameters' types (after ``skip`` leading
        parameters: ctx)."""
        if not self.params:
            return tuple(args), dict(kwargs)
        kinds = inspect.Parameter
        parameters = list(self.signature.parameters.values())[skip:]
        positional = [
            p for p in parameters if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
        ]
        var_positional = next((p for p in parameters if p.kind is kinds.VAR_POSITIONAL), None)
        var_keyword = next((p for p in parameters if p.kind is kinds.VAR_KEYWORD), None)
        decoded_args = tuple(
            self._decode_one(value, positional[i] if i < len(positional) else var_positional)
            for i, value in enumerate(args)
        )
        decoded_kwargs = {
            key: self._decode_one(value, self.signature.parameters.get(key) or var_keyword)
            for key, value in kwargs.items()
        }
        return decoded_args, decoded_kwargs

    def _decode_one(self, value: Any, param: inspect.Parameter | None) -> Any:
        annotation = self.params.get(param.name, _EMPTY) if param is not None else _EMPTY
        if annotation is _EMPTY:
            return value
        assert param is not None
        return decode(value, annotation, f"argument {param.name!r} of {self.name}")

    def decode_result(self, data: Any) -> Any:
        if self.result is _EMPTY:
            return data
        return decode(data, self.result, f"the result of {self.name}")


def conversion_of(fn: Callable[..., Any], name: str) -> Conversion | None:
    """The conversion ``fn``'s annotations ask for; None when every one is plain JSON
    (or absent), the case that must cost nothing."""
    signature = inspect.signature(fn)
    hints = _type_hints(fn)
    params = {
        param.name: hints[param.name]
        for param in signature.parameters.values()
        if param.name in hints and needs_conversion(hints[param.name])
    }
    result = hints.get("return", _EMPTY)
    if not needs_conversion(result):
        result = _EMPTY
    if not params and result is _EMPTY:
        return None
    return Conversion(name=name, signature=signature, params=params, result=result)


def _type_hints(obj: Any) -> dict[str, Any]:
    """``obj``'s annotations resolved (string annotations against its module's globals);
    one that cannot be resolved (a name imported under TYPE_CHECKING only) is left out:
    its values pass unconverted, as before."""
    try:
        return typing.get_type_hints(obj)
    except Exception:
        pass
    raw = getattr(obj, "__annotations__", {}) or {}
    module = sys.modules.get(getattr(obj, "__module__", ""), None)
    namespace = dict(vars(module)) if module is not None else {}
    namespace.update(getattr(obj, "__globals__", {}))
    hints = {}
    for key, annotation in raw.items():
        try:
            hints[key] = typing.get_type_hints(_Probe(annotation), globalns=namespace)["a"]
        except Exception:
            continue
    return hints


class _Probe:
    """An object with one annotation, ``a``, for ``typing.get_type_hints`` to resolve."""

    def __init__(self, annotation: Any) -> None:
        self.__annotations__ = {"a": annotation}


# ---------------------------------------------------------------- command line


def cli_arguments(
    target: Callable[..., Any] | inspect.Signature, argv: Sequence[str], skip: int = 1
) -> list[Any]:
    """Command-line strings as a workflow's positional arguments, by its annotations
    (``skip`` leading parameters, ``ctx``, take none): a ``str`` parameter gets the
    string as it is; a structured or typed one (a model, a list, an int...) parses it
    as JSON and decodes it to the type; an unannotated one takes JSON when the string
    parses, else the string. ``SerializationError`` when a string does not fit."""
    if isinstance(target, inspect.Signature):
        signature, hints = target, _signature_hints(target)
    else:
        signature, hints = inspect.signature(target), _type_hints(target)
    parameters = [
        p
        for p in list(signature.parameters.values())[skip:]
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        or p.kind is inspect.Parameter.VAR_POSITIONAL
    ]
    values = []
    for index, text in enumerate(argv):
        if index < len(parameters):
            param: inspect.Parameter | None = parameters[index]
        elif parameters and parameters[-1].kind is inspect.Parameter.VAR_POSITIONAL:
            param = parameters[-1]
        else:
            param = None
        annotation = hints.get(param.name, _EMPTY) if param is not None else _EMPTY
        values.append(_cli_value(text, annotation, param.name if param else f"#{index + 1}"))
    return values


def _signature_hints(signature: inspect.Signature) -> dict[str, Any]:
    return {
        p.name: p.annotation
        for p in signature.parameters.values()
        if p.annotation is not _EMPTY and not isinstance(p.annotation, str)
    }


def _cli_value(text: str, annotation: Any, name: str) -> Any:
    what = f"argument {name!r}"
    if annotation is _EMPTY or annotation is Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
    if _takes_text(annotation):
        return decode(text, annotation, what)
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SerializationError(
            f"{what} expects {_type_name(annotation)} as JSON: {exc} (got {_short(text)})"
        ) from None
    return decode(data, annotation, what)


def _takes_text(annotation: Any) -> bool:
    """True when the parameter's type is read from a JSON string: the command-line text
    is the value itself (str, a str enum, a date, a UUID, a Decimal...)."""
    if annotation is str:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(options) == 1 and _takes_text(options[0])
    if not isinstance(annotation, type):
        return False
    if issubclass(annotation, enum.Enum):
        return all(isinstance(member.value, str) for member in annotation)
    return issubclass(annotation, (_dt.date, uuid.UUID, Decimal))


# ---------------------------------------------------------------- messages


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
