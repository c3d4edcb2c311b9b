"""The web dashboard: ``python -m cli ui``.

A Tornado application over a :class:`orchestrator.inspection.WorkflowInspector`: the workflow
list with filters and counts, a workflow's page (statechart, timeline, context, failure,
cancel and retry), and the dead letters with replay and purge.
"""

from __future__ import annotations

from cli.dashboard.app import make_app, serve

__all__ = ["make_app", "serve"]
