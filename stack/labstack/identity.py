"""The verified identity, as the gateway passes it on to the service a request is for.

The auth service sets these on its answer to Traefik's forwardAuth call; Traefik copies them
onto the request it forwards, and its web entry point removes any that a client sent (see
labkit.auth), so a service behind a protected route can trust them. Kept apart from
labstack.tokens so that a service reading them does not load the cryptography.
"""

SUBJECT_HEADER = "X-Auth-Subject"  # the token's subject (its `sub` claim)
SCOPES_HEADER = "X-Auth-Scopes"  # the scopes it grants, space-separated
GATEWAY_NAME = "gateway"  # the gateway's client certificate's common name (on mTLS, labkit.certs)
