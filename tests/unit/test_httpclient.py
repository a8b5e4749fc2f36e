"""The blocking HTTP helpers answer HttpError for every way an answer can go wrong."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from chimeproxy.httpclient import HttpError, post_blocking


@pytest.fixture(params=[b"", b"garbage\r\n\r\n"])
def broken_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server that reads a request and answers with nothing or a line that is not HTTP,
    then closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(request.param)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/end"
    thread.join(5)
    listener.close()


def test_a_broken_answer_is_an_http_error(broken_server: str) -> None:
    """A status line that is not HTTP (http.client.BadStatusLine) or a connection closed
    before any answer: HttpError, which the report and event loops retry, not an exception that
    ends their thread."""
    with pytest.raises(HttpError):
        post_blocking(broken_server, b"{}", {}, timeout=5)
