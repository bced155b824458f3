"""Operation handlers: one function per `operationId` in openapi.yaml."""
