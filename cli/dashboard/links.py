"""Links from the dashboard to the other tools of a deployment: Jaeger for traces, Flower for tasks.

Both are built here only, so a tool that moves its URLs is followed in one place.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from tasks.worker.naming import flower_task_filter_url

#: Jaeger's UI in docker-compose.yml (published on 127.0.0.1:16686).
DEFAULT_JAEGER_URL = "http://127.0.0.1:16686"
#: Flower as the README starts it (``celery -A tasks flower --port=5555``).
DEFAULT_FLOWER_URL = "http://127.0.0.1:5555"


def check_base_url(option: str, url: str) -> str:
    """``url`` when it is an absolute http(s) URL with a host (a tool's base address).

    Raises:
        ValueError: naming the option and the rule.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{option} must be an absolute http:// or https:// URL with a host, got {url!r}")
    return url


def jaeger_trace_url(jaeger_url: str, trace_id: str) -> str:
    """The page of one trace in Jaeger's UI (``/trace/<32 hex digits>``)."""
    return f"{jaeger_url.rstrip('/')}/trace/{quote(trace_id, safe='')}"


def flower_tasks_url(flower_url: str, subject: str) -> str:
    """Flower's task list narrowed to one workflow's tasks (their names carry its short id:
    :mod:`tasks.worker.naming` decides both the names and this link)."""
    return flower_task_filter_url(flower_url, subject)
