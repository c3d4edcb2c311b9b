"""An event-driven statechart orchestrator with Arvo's semantics and wire format.

This package is the pure library: events, contracts, subjects, service handlers, statechart
machines, the orchestrator pipeline, machine memory and an in-process broker. It never imports
Celery; the distributed runtime lives in the ``tasks`` package.
"""

from __future__ import annotations

from orchestrator.broker import LocalBroker
from orchestrator.contract import (
    ArvoContract,
    VersionedArvoContract,
    create_arvo_contract,
    create_orchestrator_contract,
    create_simple_arvo_contract,
)
from orchestrator.domain import ArvoDomain
from orchestrator.errors import (
    ConfigViolation,
    ContractViolation,
    DecodeError,
    DefinitionError,
    ExecutionViolation,
    InvalidSubject,
    OrchestratorError,
    TransactionCause,
    TransactionViolation,
    ViolationError,
    WorkflowFinished,
    WorkflowNotFound,
)
from orchestrator.event import ArvoEvent, create_arvo_event, decode_event, encode_event
from orchestrator.handler import ArvoEventHandler, HandlerInput, create_event_handler
from orchestrator.machine import ArvoMachine
from orchestrator.memory import InMemoryMachineMemory, MachineMemory
from orchestrator.orchestrator import ArvoOrchestrator, StepOutcome, StepResult, create_orchestrator
from orchestrator.subject import OrchestrationSubject
from orchestrator.timers import VirtualClock, parse_duration

__all__ = [
    # Events and subjects
    "ArvoEvent",
    "create_arvo_event",
    "decode_event",
    "encode_event",
    "OrchestrationSubject",
    # Contracts
    "ArvoContract",
    "VersionedArvoContract",
    "create_arvo_contract",
    "create_simple_arvo_contract",
    "create_orchestrator_contract",
    "ArvoDomain",
    # Handlers and orchestrators
    "ArvoEventHandler",
    "HandlerInput",
    "create_event_handler",
    "ArvoMachine",
    "ArvoOrchestrator",
    "StepOutcome",
    "StepResult",
    "create_orchestrator",
    # Memory and broker
    "InMemoryMachineMemory",
    "MachineMemory",
    "LocalBroker",
    # Errors
    "OrchestratorError",
    "DefinitionError",
    "DecodeError",
    "InvalidSubject",
    "ViolationError",
    "ContractViolation",
    "ConfigViolation",
    "ExecutionViolation",
    "TransactionViolation",
    "TransactionCause",
    "WorkflowNotFound",
    "WorkflowFinished",
    # Time
    "VirtualClock",
    "parse_duration",
]
