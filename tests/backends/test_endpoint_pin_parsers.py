"""review6 R6-7: the host pin (`vault.backends.graph_auth.endpoint_allowed` / `require_endpoint`)
must judge the host the request really goes to. It parsed with `urllib.parse.urlsplit`, while the
credential and the tokens are sent by requests / urllib3 (msal on top of them), which parse the
authority differently: in `https://evil.example\\@login.microsoftonline.com` urlsplit's hostname
is the pinned Microsoft host, while urllib3 connects to evil.example (a backslash ends the
authority there). Today every caller runs the config's validate() first (no userinfo), but the
pin is documented as the gate on its own. Now a URL with userinfo, a backslash, whitespace or a
control character is never allowed, and urlsplit and urllib3's parse_url must agree on scheme,
host and port."""

from __future__ import annotations

import pytest
from urllib3.util import parse_url

from vault.backends.graph_auth import (
    ENV_ALLOWED_HOSTS,
    MICROSOFT_AUTHORITY_HOSTS,
    MICROSOFT_GRAPH_HOSTS,
    endpoint_allowed,
    require_endpoint,
)
from vault.errors import PermanentBackendError


def test_the_pin_judges_the_host_the_request_really_goes_to():
    """The review's reproduction."""
    for url, pinned in (
        ("https://evil.example\\@login.microsoftonline.com", MICROSOFT_AUTHORITY_HOSTS),
        ("https://evil.example\\@graph.microsoft.com/v1.0", MICROSOFT_GRAPH_HOSTS),
    ):
        really = parse_url(url).host  # where requests/urllib3 connect
        assert really == "evil.example"
        assert endpoint_allowed(url, pinned, {}) is False, (
            f"endpoint_allowed treats {url!r} as a pinned Microsoft host, but requests connects to {really}"
        )


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\@login.microsoftonline.com",
        "https://login.microsoftonline.com\\@evil.example",
        "https://login.microsoftonline.com\\",
        "https://user@login.microsoftonline.com",
        "https://user:pw@login.microsoftonline.com",
        "https://:pw@login.microsoftonline.com",
        "https://@login.microsoftonline.com",
        "https://evil.example@login.microsoftonline.com",
        "https://login.microsoftonline.com /x",
        " https://login.microsoftonline.com",
        "https://login.microsoftonline.com\n",
        "https://login.microsoft\tonline.com",
        "https://login.microsoftonline.com\x00.evil.example",
        "https://login.microsoftonline.com\x7f",
        "https://login.microsoftonline.com\x85",
        "https://login.microsoftonline.com\u3000",
        "https://login.microsoftonline.com:notaport",
        "https://login.microsoftonline.com:99999",
        "https://",
        "",
    ],
)
def test_a_url_the_parsers_could_read_differently_is_never_allowed(url):
    """Not pinned, and not allowed even when this host's allowance names the same origin."""
    allowance = {ENV_ALLOWED_HOSTS: "https://login.microsoftonline.com, https://evil.example"}
    assert endpoint_allowed(url, MICROSOFT_AUTHORITY_HOSTS, {}) is False, url
    assert endpoint_allowed(url, MICROSOFT_AUTHORITY_HOSTS, allowance) is False, url


def test_plain_urls_are_still_judged_as_before():
    assert endpoint_allowed("https://login.microsoftonline.com", MICROSOFT_AUTHORITY_HOSTS, {}) is None
    assert endpoint_allowed("https://LOGIN.microsoftonline.com:443/", MICROSOFT_AUTHORITY_HOSTS, {}) is None
    assert endpoint_allowed("https://graph.microsoft.com/v1.0", MICROSOFT_GRAPH_HOSTS, {}) is None
    allowance = {ENV_ALLOWED_HOSTS: "https://127.0.0.1:9443 https://[::1]:9444"}
    assert endpoint_allowed("https://127.0.0.1:9443", MICROSOFT_AUTHORITY_HOSTS, allowance) is True
    assert endpoint_allowed("https://[::1]:9444/v1.0", MICROSOFT_GRAPH_HOSTS, allowance) is True
    assert endpoint_allowed("https://[::1]:9445", MICROSOFT_GRAPH_HOSTS, allowance) is False


def test_an_allowance_entry_with_userinfo_or_a_backslash_allows_nothing():
    allowance = {ENV_ALLOWED_HOSTS: "https://evil.example\\@proxy.example,https://u@proxy.example"}
    assert endpoint_allowed("https://proxy.example", MICROSOFT_GRAPH_HOSTS, allowance) is False
    assert endpoint_allowed("https://evil.example", MICROSOFT_GRAPH_HOSTS, allowance) is False


def test_the_refusal_is_one_line_that_never_repeats_the_url():
    """Its userinfo may hold a password: the message names the setting, not the URL."""
    with pytest.raises(PermanentBackendError) as refused:
        require_endpoint(
            "https://user:hunter2@login.microsoftonline.com", "authority_host", MICROSOFT_AUTHORITY_HOSTS, {}
        )
    message = str(refused.value)
    assert "authority_host" in message and "\n" not in message
    assert "hunter2" not in message and "user" not in message.split("authority_host", 1)[0]
