"""store.db.Entity._instantiate, the decoder of every item read (stream images, batch reads, queries): it gives
what PynamoDB's own ``Model._instantiate`` gives, for every kind of item, with every attribute set and with none."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pynamodb.attributes import (
    Attribute,
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.models import Model

import app  # noqa: F401  (imports every module defining an entity)
from chalicelib.notify import dispatcher
from chalicelib.store.db import CompressedJSONAttribute, Entity, IsoDateTimeAttribute

dispatcher.handled_entities()  # and the stream handlers' modules


def _kinds() -> list[type[Entity]]:
    discriminator = Entity._get_discriminator_attribute()
    assert discriminator is not None
    return sorted((cls for cls in discriminator._class_map if issubclass(cls, Entity)), key=lambda c: c.__name__)


def _sample(attr: Attribute[Any], name: str) -> Any:
    if isinstance(attr, IsoDateTimeAttribute):
        return datetime(2026, 12, 4, 19, 30, tzinfo=UTC)
    if isinstance(attr, CompressedJSONAttribute | JSONAttribute):
        return {"a": [1, "ж"], "b": None}
    if isinstance(attr, BooleanAttribute):
        return True
    if isinstance(attr, NumberAttribute):
        return 7
    if isinstance(attr, UnicodeAttribute):
        return f"v-{name}-ё"
    if isinstance(attr, ListAttribute):
        return ["x"] if attr.element_type in (None, UnicodeAttribute) else []
    if isinstance(attr, MapAttribute):
        return {"k": "v"} if type(attr) is MapAttribute else None
    return None


def _full(cls: type[Entity]) -> dict[str, Any]:
    item = cls(PK="P#1", SK="S#1")
    for name, attr in cls.get_attributes().items():
        if name in ("PK", "SK", "entity"):
            continue
        value = _sample(attr, name)
        if value is not None:
            try:
                setattr(item, name, value)
            except Exception:  # an attribute kind this sample does not know: left at its default
                continue
    return item.serialize()


def _empty(cls: type[Entity]) -> dict[str, Any]:
    return cls(PK="P#1", SK="S#1").serialize(null_check=False)


@pytest.mark.parametrize("cls", _kinds(), ids=lambda c: c.__name__)
def test_every_kind_decodes_as_pynamodb_decodes_it(cls: type[Entity]) -> None:
    for raw in (_full(cls), _empty(cls)):
        ours = Entity.from_raw_data(raw)
        theirs = Model._instantiate.__func__(Entity, raw)  # type: ignore[attr-defined]
        assert type(ours) is type(theirs) is cls
        assert ours.serialize(null_check=False) == theirs.serialize(null_check=False) == raw
        assert sorted(ours.attribute_values) == sorted(theirs.attribute_values)
        for name in cls.get_attributes():
            mine, pynamo = getattr(ours, name), getattr(theirs, name)
            if isinstance(mine, MapAttribute):
                assert mine.as_dict() == pynamo.as_dict()
            else:
                assert mine == pynamo, name
