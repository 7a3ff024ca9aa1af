"""ClickHouse storage: schema files and the Store seam (the only module that writes SQL)."""
