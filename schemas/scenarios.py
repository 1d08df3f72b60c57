"""Flatten Piper scenario payloads into rows of `scenarios` and `scenario_criteria`, then into Arrow.

Pure steps, like :mod:`schemas.flatten` for runs:

* :func:`read_listed_scenario` reads one item of `GET /scenarios` into a :class:`ListedScenario` (its id
  and `updated_at`, what a load compares with the stored row to decide whether to fetch the detail).
* :func:`flatten_scenario` validates one `GET /scenarios/{id}` payload and returns a :class:`FlatScenario`:
  the scenario's row and one row per criterion of each of its turns.
* :func:`build_scenario_tables` stacks many into ``{"scenarios", "scenario_criteria"}`` tables with
  exactly the schemas of :data:`schemas.tables.SCENARIOS` and :data:`schemas.tables.SCENARIO_CRITERIA`.

Field rules are those of the run flatten (:mod:`schemas.coerce`): ids are non-empty strings, text is kept
as sent, integers and booleans accept their usual spellings, timestamps are ISO 8601 (no zone: UTC),
unknown fields are ignored, a missing optional field is null and a missing or null list is empty.
Besides:

* the payload's `id` must be the id that was asked for: a detail of another scenario is not this one's;
* `tags` is a list of strings (a tag that is not a string rejects the payload: it is no tag anyone set);
* criteria ids are unique within a scenario, so that a criteria result joins exactly one definition;
* `turn_count` is the number of turns of the detail (the definition fetched, not the list's count);
* `few_shot_example_count` counts the criterion's `few_shot_examples`, whose content is not kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from schemas.coerce import (
    PayloadRejected,
    read_bool,
    read_id,
    read_int,
    read_list,
    read_object,
    read_text,
    read_timestamp,
    shown,
)
from schemas.tables import SCENARIO_CRITERIA, SCENARIOS

__all__ = [
    "FlatScenario", "ListedScenario", "PayloadRejected", "build_scenario_tables", "flatten_scenario",
    "read_listed_scenario",
]


@dataclass(frozen=True, slots=True)
class ListedScenario:
    """One item of the scenarios list: enough to tell whether the stored definition is still current."""

    scenario_id: str
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class FlatScenario:
    """One scenario detail as rows: the `scenarios` row and its `scenario_criteria` rows (load columns aside)."""

    scenario: dict[str, Any]
    criteria: list[dict[str, Any]]


def read_listed_scenario(item: object, where: str) -> ListedScenario:
    """The id and `updated_at` of one scenarios list item; raises :class:`PayloadRejected` naming `where`."""
    listed = read_object(item, where)
    return ListedScenario(read_id(listed, "id", where), read_timestamp(listed, "updated_at", where))


def _tags(scenario: dict[str, Any]) -> list[str]:
    tags: list[str] = []
    for pos, tag in enumerate(read_list(scenario, "tags", "")):
        name = f"tags[{pos}]"
        text = read_text({name: tag}, name, "")  # a string, checked as UTF-8, or None
        if text is None:
            raise PayloadRejected(f"{name} must be a string, got {shown(tag)}")
        tags.append(text)
    return tags


def flatten_scenario(payload: object, *, scenario_id: str) -> FlatScenario:
    """Validate the detail of scenario `scenario_id` and flatten it; raises :class:`PayloadRejected` only."""
    scenario = read_object(payload, "payload")
    found = read_id(scenario, "id", "")
    if found != scenario_id:
        raise PayloadRejected(f"id {shown(found)} is not the scenario asked for ({shown(scenario_id)})")
    turns = read_list(scenario, "turns", "")
    criteria: list[dict[str, Any]] = []
    seen: set[str] = set()
    for turn_pos, turn_item in enumerate(turns):
        turn_path = f"turns[{turn_pos}]"
        turn = read_object(turn_item, turn_path)
        turn_id = read_id(turn, "id", turn_path)
        turn_order_index = read_int(turn, "order_index", turn_path, bits=32)
        user_message = read_text(turn, "user_message", turn_path)
        required = read_bool(turn, "required", turn_path)
        for pos, item in enumerate(read_list(turn, "criteria", turn_path)):
            path = f"{turn_path}.criteria[{pos}]"
            criterion = read_object(item, path)
            criteria_id = read_id(criterion, "id", path)
            if criteria_id in seen:
                raise PayloadRejected(f"{path}.id {shown(criteria_id)} is a duplicate criteria id")
            seen.add(criteria_id)
            criteria.append({
                "criteria_id": criteria_id,
                "scenario_id": scenario_id,
                "turn_id": turn_id,
                "turn_order_index": turn_order_index,
                "user_message": user_message,
                "required": required,
                "question": read_text(criterion, "question", path),
                "criteria_type": read_text(criterion, "criteria_type", path),
                "criteria_order_index": read_int(criterion, "order_index", path, bits=32),
                "few_shot_example_count": len(read_list(criterion, "few_shot_examples", path)),
            })
    row = {
        "scenario_id": scenario_id,
        "name": read_text(scenario, "name", ""),
        "description": read_text(scenario, "description", ""),
        "tags": _tags(scenario),
        "turn_count": len(turns),
        "created_by_user_id": read_text(scenario, "created_by_user_id", ""),
        "created_at": read_timestamp(scenario, "created_at", ""),
        "updated_at": read_timestamp(scenario, "updated_at", ""),
    }
    return FlatScenario(row, criteria)


def build_scenario_tables(
    flat_scenarios: Sequence[FlatScenario], *, load_id: str, loaded_at: datetime
) -> dict[str, pa.Table]:
    """``{"scenarios", "scenario_criteria"}`` tables of these scenarios, each row with the load columns.

    ``loaded_at`` must be timezone-aware (naive raises ValueError).
    """
    if loaded_at.tzinfo is None or loaded_at.utcoffset() is None:
        raise ValueError("loaded_at must be a timezone-aware datetime")
    meta = {"_load_id": load_id, "_loaded_at": loaded_at}
    scenario_rows = [flat.scenario | meta for flat in flat_scenarios]
    criteria_rows = [row | meta for flat in flat_scenarios for row in flat.criteria]
    return {
        "scenarios": pa.Table.from_pylist(scenario_rows, schema=SCENARIOS),
        "scenario_criteria": pa.Table.from_pylist(criteria_rows, schema=SCENARIO_CRITERIA),
    }
