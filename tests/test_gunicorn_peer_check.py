"""mmm.gunicorn_worker's remembered_allow_list_check: gunicorn's answer to whether a peer may set
forwarded headers, asked of gunicorn once per peer and allow list."""

from gunicorn.config import Config
from gunicorn.http import message

from mmm.gunicorn_worker import _MOST_REMEMBERED_PEERS, remembered_allow_list_check


def networks_of(allowed: str) -> tuple[list[str], list]:
    cfg = Config()
    cfg.set("forwarded_allow_ips", allowed)
    return cfg.forwarded_allow_ips, cfg.forwarded_allow_networks()


class Counted:
    def __init__(self):
        self.asked: list[str] = []

    def __call__(self, ip_str, allow_list, networks):
        self.asked.append(ip_str)
        return message._ip_in_allow_list(ip_str, allow_list, networks)


def test_it_answers_as_gunicorn_does_for_every_kind_of_peer_and_list():
    peers = ("127.0.0.1", "10.1.2.3", "192.168.0.9", "::1", "fe80::1", "not-an-address", "")
    for allowed in ("127.0.0.1,::1", "10.0.0.0/8", "*", "192.168.0.0/16,fe80::/10"):
        allow_list, networks = networks_of(allowed)
        remembered = remembered_allow_list_check(message._ip_in_allow_list)
        for peer in peers:
            for _ in range(2):  # asked, then remembered
                assert remembered(peer, allow_list, networks) == message._ip_in_allow_list(
                    peer, allow_list, networks
                ), (allowed, peer)


def test_gunicorn_is_asked_once_per_peer_and_again_for_another_allow_list():
    counted = Counted()
    remembered = remembered_allow_list_check(counted)
    local, local_networks = networks_of("127.0.0.1")
    for _ in range(5):
        assert remembered("127.0.0.1", local, local_networks) is True
        assert remembered("10.0.0.1", local, local_networks) is False
    assert counted.asked == ["127.0.0.1", "10.0.0.1"]

    private, private_networks = networks_of("10.0.0.0/8")
    assert remembered("10.0.0.1", private, private_networks) is True  # the list is part of the key
    assert counted.asked == ["127.0.0.1", "10.0.0.1", "10.0.0.1"]


def test_what_it_remembers_is_bounded():
    counted = Counted()
    remembered = remembered_allow_list_check(counted)
    allow_list, networks = networks_of("127.0.0.1")
    for index in range(_MOST_REMEMBERED_PEERS + 10):
        remembered(f"10.{index // 65536}.{index // 256 % 256}.{index % 256}", allow_list, networks)
    remembered("10.0.0.0", allow_list, networks)  # the first peer was forgotten when the memo started again
    assert counted.asked.count("10.0.0.0") == 2
