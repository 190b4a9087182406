"""ClickHouse as the sink's warehouse: the only sink package that imports clickhouse_connect."""
