"""annotator-web: the annotator's page and the admin project overview, served by a small ASGI app
(Starlette on uvicorn) that talks gRPC to human-tasks and, for identity, to the ingest service's
TokenService. Identity comes from the token a person logs in with, never from the page."""
