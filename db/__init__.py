"""The data layer: peewee models, the versioned schema, the queries the handlers need, and demo data."""
