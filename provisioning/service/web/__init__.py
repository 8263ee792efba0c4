"""HTTP plumbing every part of the service shares, and the one way to add an HTTP endpoint.

Adding an endpoint:

- Declare it on its domain's `fastapi.APIRouter` (one per domain, in that domain's `routes.py`:
  `router.get(...)`, `router.post(...)`, or `add_api_route`), with `route_class=AdminRoute` for
  operator-only routes, and let the domain's `install(app, ctx)` add the router with
  `app.include_router(router)`. `app.py` calls each `install`; nothing else adds routes but
  `/healthz`, the framework ceiling the benchmarks compare with, which is the one route on the
  app's own router (`app.router`, the same `APIRouter` API) so that it passes no included
  router. Endpoints left out of the OpenAPI document (`/metrics`, the dashboard's pages) say
  `include_in_schema=False` on their router.
- Only an endpoint every board calls all the time (today `POST /oauth/token`,
  `POST /oauth/introspect` and `POST /v1/counts`) may be hot: an `async` function taking the
  `Request` and returning a `Response`, parsing its own body, added with
  `hot.add_hot_route(app, method, path, endpoint, RouteDoc(...))`. It is then served ahead of
  routing (hot.py says what it skips), still documented and refused like any other route.

Also here: `body.read_body`, a request body read with a bound.
"""
