"""The Redis side of the runtime: everything here talks to the state Redis, nothing to Celery.

* :mod:`~tasks.store.keys`: every key, spelled once;
* :mod:`~tasks.store.scripts`: the Lua scripts, one file each;
* :mod:`~tasks.store.memory`: :class:`RedisMachineMemory`, the orchestrator's machine memory;
* :mod:`~tasks.store.lease`: subject locks (the python-redis-lock adapter);
* :mod:`~tasks.store.streams`: the dead-letter store and the external outbox streams;
* :mod:`~tasks.store.connections`: the redis-py client; :mod:`~tasks.store.codec`: msgpack.
"""
