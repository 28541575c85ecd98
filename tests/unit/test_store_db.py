"""``store.db.class_members``, the faster ``inspect.getmembers`` PynamoDB's class set-up uses, finds exactly
what ``inspect.getmembers`` finds for every model, map attribute and index class of the app."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import pynamodb.attributes
import pynamodb.indexes
import pynamodb.models
import pytest
from pynamodb.attributes import Attribute, MapAttribute
from pynamodb.indexes import Index

import chalicelib
from chalicelib.store.db import Entity, class_members


def _subclasses(root: type) -> list[type]:
    out, todo = [], [root]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def _all_classes() -> list[type]:
    for module in pkgutil.walk_packages(chalicelib.__path__, "chalicelib."):
        importlib.import_module(module.name)
    return [*_subclasses(Entity), *_subclasses(MapAttribute), *_subclasses(Index)]


CLASSES = _all_classes()


def test_pynamodb_uses_it() -> None:
    for module in (pynamodb.attributes, pynamodb.indexes, pynamodb.models):
        assert module.getmembers is class_members  # type: ignore[attr-defined]
    assert len([c for c in CLASSES if issubclass(c, Entity)]) > 40


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_same_members_as_inspect(cls: type) -> None:
    for predicate in (lambda o: isinstance(o, Attribute), lambda o: isinstance(o, Index)):
        assert class_members(cls, predicate) == inspect.getmembers(cls, predicate)
    if issubclass(cls, Entity):
        attributes = dict(inspect.getmembers(cls, lambda o: isinstance(o, Attribute)))
        assert cls._attributes == attributes
        assert set(cls._indexes) == {i.Meta.index_name for _, i in inspect.getmembers(cls, lambda o: isinstance(o, Index))}


def test_other_calls_are_inspects() -> None:
    value: Any = object()
    assert class_members(value) == inspect.getmembers(value)
    assert class_members(Entity) == inspect.getmembers(Entity)
