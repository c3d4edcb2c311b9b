"""The compiled machine engine: a machine class compiled once into tables, run by a small interpreter.

python-statemachine stays the way machines are written and the reference for what they mean;
:mod:`orchestrator.engine` runs a machine on these tables when :func:`compile_machine` covers it,
and on the library's own engine otherwise. ``tests/unit/test_compiled_differential.py`` checks
that both give the same configuration, context and emitted events after every event.
"""

from orchestrator.compiled.interpreter import Run, send, start
from orchestrator.compiled.tables import CompiledMachine, compile_machine

__all__ = ["CompiledMachine", "Run", "compile_machine", "send", "start"]
