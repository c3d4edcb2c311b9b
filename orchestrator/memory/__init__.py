"""Machine memory: where orchestrator state, locks, consumed event ids and outboxes live.

The protocol is in :mod:`orchestrator.memory.base`; :class:`InMemoryMachineMemory` keeps
everything in the process. The Redis implementation lives in ``tasks.redis_memory`` so that this
package never imports Redis or Celery.
"""

from __future__ import annotations

from orchestrator.memory.base import Lease, LockAndReadMemory, MachineMemory, ReadResult
from orchestrator.memory.in_memory import InMemoryMachineMemory

__all__ = ["InMemoryMachineMemory", "Lease", "LockAndReadMemory", "MachineMemory", "ReadResult"]
