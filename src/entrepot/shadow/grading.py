"""Task graders on live traffic: a route's `shadow.tasks` names bench task files, and a
request of one of their tasks is graded by that task's grader instead of the judge.

Live requests have no expected answer, so only graders that need none apply: a pattern
(`regex`), a JSON document (`json`, with a `schema` perhaps, without `fields`), instruction
constraints (`normalised` with `constraints`), `refusal` and `python`. A task's items must
all share one such grader: it is the task's, not an item's. Anything else is a configuration
mistake, said at start with the route, the file and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

from entrepot.bench.graders import grade
from entrepot.bench.schema import GraderSpec, TaskItem
from entrepot.bench.tasks import load_tasks
from entrepot.exceptions import ConfigError
from entrepot.types import JSON


def applies_live(spec: GraderSpec) -> bool:
    """Whether `spec` grades an answer without an expected one."""
    if spec.kind in ("regex", "python", "refusal"):
        return True
    if spec.kind == "json":
        return not spec.fields
    return spec.kind == "normalised" and spec.constraints is not None


def live_graders(route: str, paths: Sequence[str]) -> dict[str, GraderSpec]:
    """Each task of the files at `paths`, with its grader. Raises `ConfigError` naming the
    route's field and the task when a task has no single grader that applies live."""
    where = f"routes.{route}.shadow.tasks"
    try:
        items = load_tasks(paths)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    graders: dict[str, GraderSpec] = {}
    for item in items:
        known = graders.setdefault(item.task, item.grader)
        if known != item.grader:
            raise ConfigError(
                f"{where}: task {item.task!r} grades its items in different ways; live traffic"
                " needs one grader per task (set it at the file's top level)"
            )
    for task, spec in graders.items():
        if not applies_live(spec):
            raise ConfigError(
                f"{where}: task {task!r} is graded by `{spec.kind}`, which needs an expected"
                " answer that live requests do not have; only regex, json (without fields),"
                " constraints, refusal and python apply. Remove its file from the list and"
                " the route's judge grades it"
            )
    return graders


async def difference(spec: GraderSpec, body: JSON, candidate: str, incumbent: str) -> float:
    """The candidate's score minus the incumbent's, both by `spec`, on the request `body`."""
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    item = TaskItem(id="live", messages=messages, grader=spec)
    return (await grade(item, candidate)).score - (await grade(item, incumbent)).score
