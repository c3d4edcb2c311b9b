"""Fault-injection suite: real workers, a real Redis, real faults; nothing lost, nothing doubled."""
