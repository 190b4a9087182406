"""ClickHouse as the sink's warehouse: the only sink package that imports clickhouse_connect."""

__all__: list[str] = []  # its modules are the surface: warehouse, writer, query, translate
