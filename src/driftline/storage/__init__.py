"""ClickHouse storage: the schema files and the store, the only package that writes SQL."""
