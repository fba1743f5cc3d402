"""The one exception every transform raises."""

from __future__ import annotations


class TransformError(Exception):
    """A transform could not run: bad config or data of the wrong shape.

    `field` is where the problem is, relative to the step's transform config: `config.pattern`,
    `config.sources[1]`, or `input` for the data itself. The message names both the operation
    and the field so it reads well on its own in a step record.
    """

    def __init__(self, operation: str, field: str | None, message: str) -> None:
        self.operation = operation
        self.field = field
        self.detail = message
        where = f"{field}: " if field else ""
        super().__init__(f"transform '{operation}': {where}{message}")
