"""The page at / as served text (no browser): it asks only for routes the server has, and for nothing
from elsewhere, not even the /favicon.ico a browser requests from a page that names no icon."""

from __future__ import annotations

import re

from cnnx.serve.app import ROUTES
from cnnx.serve.page import PAGE


def test_the_page_fetches_only_the_servers_routes_and_names_its_own_icon():
    routes = {route.path for route in ROUTES}
    # fetch("/v2/repository/index", ...), fetch("/v2/models/" + name), and the upload's "/predict?..." URL
    urls = re.findall(r'(?:fetch\(|const url = )"(/[^"?]*)', PAGE)
    assert len(urls) == 3, urls
    for url in urls:
        assert url in routes or url + "{name}" in routes, url
    assert not re.search(r"https?:|//[a-z]|url\(", PAGE), "the page loads something from elsewhere"
    assert re.search(r'<link rel="icon" href="data:', PAGE), "browsers would ask for /favicon.ico (a 404)"
