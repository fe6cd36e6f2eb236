"""The plan as code: the ordered steps of a deploy for an environment, bound to an executor."""

from __future__ import annotations

from typing import Protocol

from deploy.context import RunContext
from deploy.steps import TITLES, Change, Step


class Executor(Protocol):
    """What an executor offers: every step and its check, and the changes it made so far."""

    changes: list[Change]

    def infrastructure(self) -> str: ...
    def check_infrastructure(self) -> None: ...
    def secrets(self) -> str: ...
    def backup(self) -> str: ...
    def candidates(self) -> str: ...
    def rules(self) -> str: ...
    def verify(self) -> str: ...
    def canary(self) -> str: ...
    def promote(self) -> str: ...
    def check_promote(self) -> None: ...
    def bake(self) -> str: ...
    def monitoring(self) -> str: ...
    def checklist(self) -> str: ...


def build(ctx: RunContext, executor: Executor) -> list[Step]:
    """The steps of the plan in order, each bound to how the executor does and checks it."""
    backup = [Step("backup", TITLES["backup"], executor.backup)] if ctx.backup else []
    canary = [Step("canary", TITLES["canary"], executor.canary)] if ctx.progressive else []
    bake = [Step("bake", TITLES["bake"], executor.bake)] if ctx.progressive else []
    return [
        Step(
            "infrastructure", TITLES["infrastructure"], executor.infrastructure, executor.check_infrastructure
        ),
        Step("secrets", TITLES["secrets"], executor.secrets),
        *backup,
        Step("candidates", TITLES["candidates"], executor.candidates),
        Step("rules", TITLES["rules"], executor.rules),
        *([] if ctx.session == "canary" else [Step("verify", TITLES["verify"], executor.verify)]),
        *canary,
        Step("promote", TITLES["promote"], executor.promote, executor.check_promote),
        *bake,
        Step("monitoring", TITLES["monitoring"], executor.monitoring),
        Step("checklist", TITLES["checklist"], executor.checklist),
    ]
