"""Hot endpoints (provisioning/service/web/hot.py): served ahead of routing, answered as a routed
endpoint would be."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from provisioning.service.web import hot as hot_paths
from provisioning.service.web.hot import RouteDoc, add_hot_route


class Refused(Exception):
    pass


def _app() -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    served: list[str] = []

    async def hot(request: Request) -> Response:
        served.append(str(request.scope.get("route").path))  # type: ignore[union-attr]
        body = await request.body()
        if body == b"refuse":
            raise Refused
        if body == b"crash":
            raise RuntimeError("a bug")
        return PlainTextResponse("hot:" + body.decode())

    async def refused(_request: Request, _exc: Exception) -> Response:
        return PlainTextResponse("refused", status_code=418)

    hot_paths.install(app)
    add_hot_route(app, "POST", "/hot", hot, RouteDoc(summary="hot"))
    app.add_exception_handler(Refused, refused)
    return app, served


def test_a_hot_endpoint_is_served_and_the_apps_handlers_answer_for_it() -> None:
    app, served = _app()
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.post("/hot", content=b"x").text == "hot:x"
        assert served == ["/hot"]  # the route is in the scope, as routing would put it
        refused = http.post("/hot", content=b"refuse")
        assert (refused.status_code, refused.text) == (418, "refused")
        assert http.post("/hot", content=b"crash").status_code == 500  # no handler: a 500


def test_other_methods_and_paths_go_the_usual_way() -> None:
    app, _served = _app()
    with TestClient(app) as http:
        assert http.get("/hot").status_code == 405  # the router's answer
        assert http.post("/hot/", follow_redirects=False).status_code == 307  # the router's
        assert http.post("/cold").status_code == 404


def test_under_a_root_path_the_router_decides() -> None:
    root = "/api"
    app, served = _app()
    with TestClient(app, root_path=root) as http:
        assert http.post(f"{root}/hot", content=b"y").text == "hot:y"
        assert served == ["/hot"]
