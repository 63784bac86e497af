"""The page at / as served text (no browser): it asks only for routes the server has, and for nothing
from elsewhere, not even the /favicon.ico a browser requests from a page that names no icon."""

from __future__ import annotations

import re
from urllib.parse import urljoin

from cnnx.serve.app import ROUTES
from cnnx.serve.page import PAGE


def _fetched() -> list[str]:
    # fetch("v2/repository/index", ...), fetch("v2/models/" + name), and the upload's "predict?..." URL
    return re.findall(r'(?:fetch\(|const url = )"([^"?]*)', PAGE)


def test_the_page_fetches_only_the_servers_routes_and_names_its_own_icon():
    routes = {route.path for route in ROUTES}
    urls = _fetched()
    assert len(urls) == 3, urls
    for url in urls:
        path = urljoin("http://box:8000/", url)[len("http://box:8000") :]
        assert path in routes or path + "{name}" in routes, url
    assert not re.search(r"https?:|//[a-z]|url\(", PAGE), "the page loads something from elsewhere"
    assert re.search(r'<link rel="icon" href="data:', PAGE), "browsers would ask for /favicon.ico (a 404)"


def test_the_page_works_behind_a_proxy_that_serves_it_under_a_sub_path():
    # a reverse proxy passing https://host/cnnx/... to the server's /...: the page's requests must stay
    # under /cnnx/, so every URL it builds is relative to the page
    for url in _fetched():
        assert not url.startswith("/"), f"{url!r} would leave the proxy's sub-path"
        assert urljoin("https://host/cnnx/", url).startswith("https://host/cnnx/")
