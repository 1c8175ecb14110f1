"""Where the gateway may send requests: checked when a URL is saved and again on every connect.

The check on connect resolves the host once, checks every address it got, and connects to the
address it checked (the Host header and TLS name stay the host name), so a DNS answer that
changes between the check and the connect, a rebinding attack, gets nowhere. Link-local and
cloud metadata addresses are refused unless MMM_UPSTREAM_ALLOW names their range; loopback and
private ranges are allowed by default because model servers live there.
"""

import functools
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError
from urllib3.poolmanager import PoolManager

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services hand out cloud credentials to whoever asks from inside the host.
REFUSED_UNLESS_ALLOWED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OpenStack metadata at 169.254.169.254
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "0.0.0.0/8",  # "this host": connecting to 0.0.0.0 reaches local services by another name
        "::/128",
    )
)


class EgressDenied(Exception):
    """The policy refuses this destination. The message names the host and why, never a URL."""


def getaddrinfo(host: str, port: int) -> list[tuple]:
    """The resolver; tests replace this attribute. Looked up at call time, after gevent patched."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


@dataclass(frozen=True)
class EgressPolicy:
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_names: tuple[str, ...] = ()
    deny_networks: tuple[IPNetwork, ...] = ()
    deny_names: tuple[str, ...] = ()

    @property
    def has_allow_list(self) -> bool:
        return bool(self.allow_networks or self.allow_names)

    def check_name(self, host: str) -> None:
        name = _normal_name(host)
        if _name_matches(name, self.deny_names):
            raise EgressDenied(f"host {host} is in MMM_UPSTREAM_DENY")

    def check_address(self, host: str, address: IPAddress) -> None:
        """Refuse ``address`` if any IPv4 address it carries would be refused (see ``carried``)."""
        forms = carried(address)
        named = str(address) if len(forms) == 1 else f"{address} (which carries {forms[-1]})"
        for form in forms:
            if any(form in network for network in self.deny_networks):
                raise EgressDenied(f"host {host} resolves to {named}, which MMM_UPSTREAM_DENY refuses")
            explicitly_allowed = any(form in network for network in self.allow_networks)
            if not explicitly_allowed and any(form in network for network in REFUSED_UNLESS_ALLOWED):
                raise EgressDenied(
                    f"host {host} resolves to {named}, a link-local or cloud metadata address; "
                    "add its range to MMM_UPSTREAM_ALLOW if it is really a model server"
                )
        allowed = any(form in network for form in forms for network in self.allow_networks)
        if self.has_allow_list and not allowed and not _name_matches(_normal_name(host), self.allow_names):
            raise EgressDenied(f"host {host} ({address}) is not in MMM_UPSTREAM_ALLOW")

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host``, every one of them checked.

        Refuses the host if any address is refused: a name answering with a good address and a
        metadata address must not get through on the second try.
        """
        self.check_name(host)
        literal = _literal_address(host)
        if literal is not None:
            self.check_address(host, literal)
            return [str(literal)]
        addresses = []
        for *_, sockaddr in getaddrinfo(host, port):
            address = ipaddress.ip_address(sockaddr[0].split("%")[0])
            self.check_address(host, address)
            if str(address) not in addresses:
                addresses.append(str(address))
        return addresses

    def check_url(self, url: str) -> None:
        """The check when a URL is saved. A name that does not resolve now passes: DNS may be
        down for a moment, and the connect check refuses it later if it resolves badly."""
        host = urlsplit(url).hostname
        if not host:
            return
        port = urlsplit(url).port or (443 if url.lower().startswith("https") else 80)
        try:
            self.resolve(host, port)
        except (socket.gaierror, UnicodeError):
            return


@functools.cache
def _policy(allow: tuple[str, ...], deny: tuple[str, ...]) -> EgressPolicy:
    allow_networks, allow_names = _parse("MMM_UPSTREAM_ALLOW", allow)
    deny_networks, deny_names = _parse("MMM_UPSTREAM_DENY", deny)
    return EgressPolicy(allow_networks, allow_names, deny_networks, deny_names)


def policy() -> EgressPolicy:
    return _policy(tuple(settings.MMM_UPSTREAM_ALLOW), tuple(settings.MMM_UPSTREAM_DENY))


def _parse(setting: str, entries: tuple[str, ...]) -> tuple[tuple[IPNetwork, ...], tuple[str, ...]]:
    networks, names = [], []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        name = _normal_name(entry)
        if not name or any(ch in name for ch in "/:@ "):
            raise ImproperlyConfigured(f"{setting}: {entry!r} is neither a CIDR range nor a host name")
        names.append(name)
    return tuple(networks), tuple(names)


def _normal_name(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _name_matches(name: str, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]):
                return True
        elif name == pattern:
            return True
    return False


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(_normal_name(host).split("%")[0])
    except ValueError:
        return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052's well-known prefix


def carried(address: IPAddress) -> list[IPAddress]:
    """``address`` and every IPv4 address it carries, the one a packet ends up at last.

    Each of these IPv6 forms reaches an IPv4 address through a translator or tunnel on the
    way, so ``64:ff9b::a9fe:a9fe`` is the metadata address as surely as 169.254.169.254:
    IPv4-mapped ``::ffff:a.b.c.d`` (the host's own stack), IPv4-compatible ``::a.b.c.d``
    (deprecated, still routed by some stacks), NAT64 ``64:ff9b::a.b.c.d``, 6to4
    ``2002:AABB:CCDD::`` and Teredo ``2001:0::`` (its server and its client).
    """
    if isinstance(address, ipaddress.IPv4Address):
        return [address]
    if address.ipv4_mapped:
        return [address.ipv4_mapped]  # the host itself speaks IPv4 to it: only that counts
    forms: list[IPAddress] = [address]
    value = int(address)
    if value >> 32 == 0 and value > 1:  # ::a.b.c.d, but not :: or ::1
        forms.append(ipaddress.IPv4Address(value))
    if address in _NAT64:
        forms.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if address.sixtofour:
        forms.append(address.sixtofour)
    if address.teredo:
        forms.extend(address.teredo)  # (server, client)
    return forms


# --- Connections that go to the checked address -----------------------------------------------
# urllib3's; inference/upstream_gevent.py's HostPool does the same for geventhttpclient.


class _CheckedConnectionMixin:
    def _new_conn(self):
        try:
            addresses = policy().resolve(self._dns_host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        # urllib3 connects to _dns_host; self.host stays the name for the Host header, SNI and
        # the certificate check.
        name = self._dns_host
        self._dns_host = addresses[0]
        try:
            return super()._new_conn()
        finally:
            self._dns_host = name


class CheckedHTTPConnection(_CheckedConnectionMixin, HTTPConnection):
    pass


class CheckedHTTPSConnection(_CheckedConnectionMixin, HTTPSConnection):
    pass


class CheckedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = CheckedHTTPConnection


class CheckedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = CheckedHTTPSConnection


class CheckedPoolManager(PoolManager):
    """urllib3's pool manager with every new connection checked against the egress policy."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pool_classes_by_scheme = {"http": CheckedHTTPConnectionPool, "https": CheckedHTTPSConnectionPool}
