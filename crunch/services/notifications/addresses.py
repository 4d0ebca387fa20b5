"""Which addresses a webhook may reach: public ones only, unless
``CRUNCH_NOTIFY_PRIVATE_ADDRESSES`` allows those inside the network.

The name is checked before the request, for a clear error. The address the connection
reaches is checked again once it is connected, before a byte is sent: a name that answers
a public address to the check and a private one to the connection (DNS rebinding) is
refused too. Through a proxy (``HTTPS_PROXY``) the proxy connects, not crunch, and only
the first check applies: the proxy's own rules guard the rest.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from crunch.conf import crunch_settings


class PrivateAddress(OSError):
    """The connection reached an address a webhook may not call."""


def refused_address(url: str) -> str:
    """Why the webhook's host may not be called ("" if it may)."""
    if crunch_settings.NOTIFY_PRIVATE_ADDRESSES:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        found = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"{host} does not resolve: {exc}"
    for *_, address in found:
        if why := refusal(host, str(address[0])):
            return why
    return ""


def refusal(host: str, address: str) -> str:
    """Why ``host`` at ``address`` may not be called ("" if it may)."""
    ip = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
    if ip.is_global:
        return ""
    return (
        f"{host} is {ip}, not a public address: set CRUNCH_NOTIFY_PRIVATE_ADDRESSES "
        "= True to send webhooks inside your network."
    )


def checked(connection: HTTPConnection) -> socket.socket:
    """A new socket of ``connection``, closed and refused if its peer is not public."""
    sock = HTTPConnection._new_conn(connection)
    if crunch_settings.NOTIFY_PRIVATE_ADDRESSES:
        return sock
    why = refusal(connection.host, str(sock.getpeername()[0]))
    if why:
        sock.close()
        raise PrivateAddress(why)
    return sock


class CheckedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return checked(self)


class CheckedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return checked(self)


class CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = CheckedHTTPConnection


class CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = CheckedHTTPSConnection


class PublicOnly(HTTPAdapter):
    """Direct connections check their peer (``checked``); proxied ones are the proxy's."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": CheckedHTTPPool,
            "https": CheckedHTTPSPool,
        }


def session() -> requests.Session:
    """A session whose direct connections reach public addresses only (unless allowed)."""
    made = requests.Session()
    adapter = PublicOnly()
    made.mount("http://", adapter)
    made.mount("https://", adapter)
    return made


def refusal_of(exc: requests.ConnectionError) -> str:
    """The refusal inside a failed connection ("" if it failed for another reason): urllib3
    and requests wrap it once or twice, as a reason or an argument."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        error = todo.pop()
        if isinstance(error, PrivateAddress):
            return str(error)
        if id(error) not in seen:
            seen.add(id(error))
            inner = (
                *error.args,
                getattr(error, "reason", None),
                error.__cause__,
                error.__context__,
            )
            todo += [item for item in inner if isinstance(item, BaseException)]
    return ""
