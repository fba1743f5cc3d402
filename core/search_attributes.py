"""The custom search attributes a job carries, for the Web UI's filters and `temporal workflow
list --query`. Kept apart from core/temporal.py so workflow code can import it without the
client and runtime modules."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

WORKFLOW_NAME = SearchAttributeKey.for_keyword("WorkflowName")
WORKFLOW_VERSION = SearchAttributeKey.for_keyword("WorkflowVersion")
JOB_STATUS = SearchAttributeKey.for_keyword("JobStatus")


def job_search_attributes(name: str, version: str) -> TypedSearchAttributes:
    """What a job is filtered by from the moment it starts."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(WORKFLOW_NAME, name),
            SearchAttributePair(WORKFLOW_VERSION, version),
            SearchAttributePair(JOB_STATUS, "queued"),
        ]
    )
