"""A real OpenID Connect provider for the tests and the demo: django-oauth-toolkit with OIDC on.

It is a Django project of its own (its settings, its SQLite database, its process), started by
`process.start_provider` in a subprocess on a free loopback port. A token-protected admin API
(`/__admin__/…`) lets a test or the demo create users with the claims the console reads (groups,
amr, acr, preferred_username, email, email_verified), register the console as a client, and make
the provider misbehave on demand (a bad signature, a wrong audience, an expired ID token...).
"""
