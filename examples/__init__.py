"""Real workflows used by the demo, the README, the tests and the benchmarks.

* :mod:`examples.increment`: read a value, increment it, finish with the result (spec 9 #75).
* :mod:`examples.fanout`: call one service 10 times in parallel and sum the replies.
* :mod:`examples.approval`: wait for a person's decision with daily reminders and a deadline;
  time, deadlines and cancellation.
* :mod:`examples.registry`: ``build(memory)``, every handler and orchestrator of the examples,
  the default of the Celery runtime's ``ORCH_HANDLERS`` setting.
"""
