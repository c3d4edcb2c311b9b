"""Entry points: the command line (``python -m cli``) and the demos.

The top of the import graph: it may import the core (``orchestrator``), the runtime (``tasks``),
the settings (``config``) and the example workflows (``examples``); nothing imports it.
"""
