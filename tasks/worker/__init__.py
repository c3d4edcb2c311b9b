"""The Celery side of the runtime: everything here talks to Celery or kombu.

* :mod:`~tasks.worker.app`: building an app (:func:`create_app`, :func:`build_app`);
* :mod:`~tasks.worker.task`: ``tasks.execute`` and its task class (routing, the process runtime);
* :mod:`~tasks.worker.naming`: the name each event's task goes by in Flower and the worker log;
* :mod:`~tasks.worker.celery_config`: the Celery configuration derived from the settings;
* :mod:`~tasks.worker.consumer`: dead letters for messages Celery refuses before any task runs;
* :mod:`~tasks.worker.startup`: a worker refuses to start against a Redis it can never use;
* :mod:`~tasks.worker.kombu_redis`: the reliable Redis broker transport (kombu's internals).
"""
