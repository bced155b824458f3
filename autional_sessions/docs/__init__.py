"""The published API docs, built from openapi.yaml alone (`site`)."""
