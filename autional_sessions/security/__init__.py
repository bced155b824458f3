"""Who may call: bearer-token verification with PyJWT (`bearer_auth`) and the keys it verifies with
(`token_keys`: an HMAC secret, a PEM public key, or an identity provider's JWKS)."""
