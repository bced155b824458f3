"""Who may call, and how often: bearer-token verification with PyJWT (`bearer_auth`), the keys it verifies
with (`token_keys`: an HMAC secret, a PEM public key, or an identity provider's JWKS), and the limiter that
counts requests per key (`rate_limiter`), which the HTTP layer applies per client and per subject."""
