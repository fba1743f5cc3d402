"""What a step type's `check()` may ask of the definition checker.

Each step model checks its own fields (workflow_defs/schema.py, `check` on the model), so a new
step type brings its checks with it and validation.py has no per-type branch. Paths are
relative to the step (`config.items`); the checker prefixes the step's JSON path and reports
errors and warnings there.
"""

from __future__ import annotations

from typing import Any, Protocol


class StepChecks(Protocol):
    def refs(
        self, value: Any, where: str, *, inner: bool = False, names: tuple[str, ...] = ()
    ) -> None:
        """Every `${…}` in `value` must name something this step can see. `inner`: also the
        step's own blocks' steps (read after they ran); `names`: extra roots (loop variables)."""

    def condition(
        self, text: str, where: str, *, inner: bool = False, names: tuple[str, ...] = ()
    ) -> None:
        """`text` parses as a condition and its references are visible (as in `refs`)."""

    def prompt(
        self, text: str, where: str, variables: dict[str, Any], *, file: str | None = None
    ) -> None:
        """A prompt's placeholders resolve: `variables`, the block's names, or references.
        With `file`, `text` is ignored and the template under PROMPTS_DIR is loaded (and
        carried into the snapshot)."""

    def service(self, service: str, operation: str, where: str) -> None:
        """The service/operation is declared in services.json."""

    def transform(self, operation: str, config: dict[str, Any], where: str) -> None:
        """The transform exists and its config is well formed."""

    def json_schema(self, schema: dict[str, Any] | None, where: str) -> None:
        """`schema` is a valid JSON Schema (draft 2020-12)."""

    def error(self, where: str, message: str) -> None:
        """A problem the step's model found itself (a combination of fields)."""
