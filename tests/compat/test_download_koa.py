"""download_koa against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.cookiejar
import os

import httpx
import pytest

from koa_middleware import download
from koa_middleware.client.download import KOADownloadError, download_koa
from koa_middleware.errors import ArchiveError, InvalidRecordError
from support.scripted_http import ScriptedHTTPServer, raw_answer, truncated_answer

NAME = "HI.20240924.45296.78.fits"
BODY = b"SIMPLE  =                    T" + bytes(range(256)) * 300
SERVICE = "/cgi-bin/getKOA/nph-getKOA"


@pytest.fixture
def server():
    with ScriptedHTTPServer() as running:
        yield running


def _service_url(server: ScriptedHTTPServer) -> str:
    """The server's stand-in for getKOA, shaped like the real one."""
    return server.url + SERVICE + "?return_mode=json&"


def _files_url(server: ScriptedHTTPServer) -> str:
    return server.url + "/files/"


def test_constants_keep_their_values():
    assert download.login_url == "https://koa.ipac.caltech.edu/cgi-bin/KoaAPI/nph-koaLogin?"
    assert download.getkoa_url == (
        "https://koa.ipac.caltech.edu/cgi-bin/getKOA/nph-getKOA?return_mode=json&"
    )
    assert download.caliblist_url == (
        "https://koa.ipac.caltech.edu/cgi-bin/KoaAPI/nph-getCaliblist?"
    )
    assert download.BASE_URL_KECK == "https://www3.keck.hawaii.edu/api/calibrations/"


def test_a_good_download(server, tmp_path):
    server.route("GET", SERVICE, raw_answer(BODY, content_type="application/octet-stream"))
    output_dir = tmp_path / "raw" / "night1"  # created on the way

    path = download_koa(NAME, str(output_dir), url=_service_url(server))

    assert path == os.path.join(str(output_dir), NAME)
    assert isinstance(path, str)
    assert open(path, "rb").read() == BODY
    assert os.listdir(output_dir) == [NAME]  # no temporary file left
    (exchange,) = server.exchanges
    assert exchange.method == "GET"
    assert exchange.handler.path == SERVICE + "?return_mode=json&" + NAME


def test_the_file_gets_the_usual_permissions(server, tmp_path):
    server.route("GET", "/files/" + NAME, raw_answer(BODY))
    output_dir = tmp_path / "out"

    path = download_koa(NAME, output_dir, url=_files_url(server))

    plain = tmp_path / "written_directly"
    with open(plain, "wb"):
        pass
    assert os.stat(path).st_mode == os.stat(plain).st_mode


def test_a_path_like_output_dir_and_a_replaced_file(server, tmp_path):
    server.route("GET", "/files/" + NAME, raw_answer(BODY))
    (tmp_path / NAME).write_bytes(b"an older copy")

    path = download_koa(NAME, tmp_path, url=_files_url(server))

    assert path == os.path.join(str(tmp_path), NAME)
    assert (tmp_path / NAME).read_bytes() == BODY
    assert os.listdir(tmp_path) == [NAME]


def test_the_service_url_is_read_at_call_time(server, tmp_path, monkeypatch):
    server.route("GET", SERVICE, raw_answer(BODY))
    monkeypatch.setattr(download, "getkoa_url", _service_url(server))

    download_koa(NAME, tmp_path)

    assert server.hits[("GET", SERVICE)] == 1


def test_a_redirect_is_followed(server, tmp_path):
    server.route("GET", "/files/" + NAME, lambda ex: ex.send(302, headers={"Location": "/moved"}))
    server.route("GET", "/moved", raw_answer(BODY))

    path = download_koa(NAME, tmp_path, url=_files_url(server))

    assert open(path, "rb").read() == BODY


@pytest.mark.parametrize("status", [403, 404, 500])
def test_an_error_answer_leaves_nothing(server, tmp_path, status):
    server.route("GET", "/files/" + NAME, raw_answer(b"<html>no</html>", status, "text/html"))
    output_dir = tmp_path / "raw"

    with pytest.raises(KOADownloadError) as caught:
        download_koa(NAME, output_dir, url=_files_url(server))

    message = str(caught.value)
    assert NAME in message
    assert f"HTTP {status}" in message
    assert caught.value.status == status
    assert isinstance(caught.value, RuntimeError)  # as the original raised
    assert isinstance(caught.value, ArchiveError)
    assert os.listdir(output_dir) == []


def test_a_404_keeps_an_existing_copy(server, tmp_path):
    (tmp_path / NAME).write_bytes(b"the copy we had")

    with pytest.raises(KOADownloadError, match="HTTP 404"):
        download_koa(NAME, tmp_path, url=_files_url(server))  # no route: 404

    assert os.listdir(tmp_path) == [NAME]
    assert (tmp_path / NAME).read_bytes() == b"the copy we had"


def test_a_body_cut_short_leaves_nothing(server, tmp_path):
    server.route("GET", "/files/" + NAME, truncated_answer(BODY[:1000], declared=len(BODY)))

    with pytest.raises(KOADownloadError) as caught:
        download_koa(NAME, tmp_path, url=_files_url(server))

    assert NAME in str(caught.value)
    assert "nothing was saved" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
    assert os.listdir(tmp_path) == []


def test_a_body_cut_short_keeps_an_existing_copy(server, tmp_path):
    # The bytes grow under another name: the old file stays whole until the new one is.
    (tmp_path / NAME).write_bytes(b"the copy we had")
    server.route("GET", "/files/" + NAME, truncated_answer(BODY[:1000], declared=len(BODY)))

    with pytest.raises(KOADownloadError):
        download_koa(NAME, tmp_path, url=_files_url(server))

    assert os.listdir(tmp_path) == [NAME]
    assert (tmp_path / NAME).read_bytes() == b"the copy we had"


def test_an_unreachable_server(tmp_path):
    with ScriptedHTTPServer() as stopped:
        url = _files_url(stopped)
    with pytest.raises(KOADownloadError, match=NAME):
        download_koa(NAME, tmp_path, url=url)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["../x", "sub/../../x", "..", "", "a\\..\\x", "x\x00y"])
def test_a_name_that_is_not_plain_is_refused_before_any_request(server, tmp_path, name):
    sentinel = tmp_path / "x"
    sentinel.write_bytes(b"sentinel")
    output_dir = tmp_path / "out"
    server.route("GET", "/files/" + name, raw_answer(b"overwritten"))

    with pytest.raises(InvalidRecordError, match="plain name"):
        download_koa(name, str(output_dir), url=_files_url(server))

    assert server.exchanges == []
    assert sentinel.read_bytes() == b"sentinel"
    assert not output_dir.exists()
    assert sorted(os.listdir(tmp_path)) == ["x"]


def test_an_absolute_name_is_refused(server, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"sentinel")

    with pytest.raises(ValueError, match="path separator"):
        download_koa(str(target), tmp_path / "out", url=_files_url(server))

    assert server.exchanges == []
    assert target.read_bytes() == b"sentinel"


def _cookie(name: str, value: str, domain: str) -> http.cookiejar.Cookie:
    jar = httpx.Cookies()
    jar.set(name, value, domain=domain)
    (cookie,) = list(jar.jar)
    return cookie


def test_cookies_from_a_dict(server, tmp_path):
    server.route("GET", "/files/" + NAME, raw_answer(BODY))

    download_koa(NAME, tmp_path, {"koa_session": "abc123", "theme": "dark"}, url=_files_url(server))

    (exchange,) = server.exchanges
    assert exchange.headers["cookie"] == "koa_session=abc123; theme=dark"


def test_cookies_from_a_jar_go_only_to_their_host(server, tmp_path):
    answer = lambda ex: ex.send(200, BODY, headers={"Set-Cookie": "fresh=1; Path=/"})  # noqa: E731
    server.route("GET", "/files/" + NAME, answer)
    jar = http.cookiejar.CookieJar()
    jar.set_cookie(_cookie("koa_session", "abc123", "127.0.0.1"))
    jar.set_cookie(_cookie("other_site", "zzz", "example.org"))

    download_koa(NAME, tmp_path, cookies=jar, url=_files_url(server))

    (exchange,) = server.exchanges
    assert exchange.headers["cookie"] == "koa_session=abc123"
    assert sorted(cookie.name for cookie in jar) == ["koa_session", "other_site"]  # unchanged


def test_cookies_from_httpx(server, tmp_path):
    server.route("GET", "/files/" + NAME, raw_answer(BODY))
    cookies = httpx.Cookies({"observer": "obsid=42"})

    download_koa(NAME, tmp_path, cookies, url=_files_url(server))

    assert server.exchanges[0].headers["cookie"] == "observer=obsid=42"


@pytest.mark.parametrize("cookies", ["koa_session=abc123", ["koa_session"], {"n": 1}])
def test_other_cookies_are_refused_before_any_request(server, tmp_path, cookies):
    with pytest.raises(TypeError, match="cookies must be"):
        download_koa(NAME, tmp_path, cookies, url=_files_url(server))
    assert server.exchanges == []


def test_no_progress_bar_off_a_terminal(server, tmp_path, capfd):
    server.route("GET", "/files/" + NAME, raw_answer(BODY))

    download_koa(NAME, tmp_path, url=_files_url(server), progress=True)

    assert capfd.readouterr().err == ""
