"""Where the engine's output goes: ClickHouse tables, Kafka topics, Redis, Prometheus.

Each sink keeps its configuration in ``__init__``, opens its client in ``build()``
(never at import or construction), writes one bulk call per batch, and states its
delivery guarantee in its docstring.
"""
