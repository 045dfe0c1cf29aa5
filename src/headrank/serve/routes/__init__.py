"""One module per API family; each holds a FastAPI ``router`` that ``create_app`` includes. A new route
family is one new module here plus its name in ``ROUTERS``."""

ROUTERS = ("cohere", "tei", "explain", "ops")
