"""What the service tells its operators: the request's identity and trace context (`request_context`,
`tracing`, with OpenTelemetry export in `otel`), Prometheus metrics (`metrics`, `metrics_dir`), log lines
(`log_format`) and the access log (`access_log`), the last two fed by `request_outcome`."""
