"""Test infrastructure: a real ``redis-server`` and real ``celery worker`` subprocesses.

Nothing here is autouse: a test asks for the fixtures of :mod:`tests.helpers.fixtures`
(re-exported by ``tests/integration/conftest.py``) or uses the helpers directly.
"""
