"""Operations on a running deployment, outside the workers' consumer groups.

:mod:`.status` (``ingest status``: the status model, pure), :mod:`.dlq`
(reading dead letters and their state: ``ingest dlq show``), :mod:`.redrive`
(``ingest dlq retry``), and :mod:`.replay` with its pure planning
(:mod:`.replay_plan`) and key check (:mod:`.replay_keys`) (``ingest replay``).
They read topics through :class:`staging.kafka.scan.TopicScanner` and write
through the workers' own targets, so an operation behaves as the pipeline does.
"""

__all__: list[str] = []  # its modules are the surface: status, dlq, redrive, replay
