"""Source workers: connect to a provider, parse and process its messages, stage envelopes.

* :mod:`.authoring`: ``define_source`` / ``define_resource`` (pure);
* :mod:`.frames`, :mod:`.backoff`, :mod:`.buffer`: the runtime's pure core
  (untrusted-input limits, reconnect delays, what waits to be staged);
* :mod:`.runtime` and :mod:`.context`: the Durable Runtime and what a
  source's ``start`` is handed;
* :mod:`.transport`: the provider websocket and HTTP clients (the only I/O);
* :mod:`.connectors`: one folder per provider (``coinbase``);
* :mod:`.run`: ``ingest source run <source>``.

See docs/sources.md.
"""
