"""Which MySQL authentication exchanges the mysql probe answers, so that its password never
reaches a server that asks for it in clear text, unless the admin allowed that for the probe
and the transport is a unix socket.  Pure: fed the packets the server sends, no I/O.

Always answered (the server learns a hash of its own challenge, not the password):
mysql_native_password, client_ed25519, and caching_sha2_password's fast path.

Answered only with ``allow_cleartext_password`` (the password itself goes to the server):
mysql_clear_password, dialog (PAM), sha256_password and caching_sha2_password's full
authentication (clear text on a secure transport, else encrypted with a public key that the
server itself chooses, which a hostile server can decrypt).

Never answered: mysql_old_password and the pre-4.1 auth switch (a hash that logs in as well
as the password and is quickly reversed), and any plugin not named above.
"""

from __future__ import annotations

from sdwatch.probes.errors import ProtocolError

CLIENT_PLUGIN_AUTH = 0x80000
CHALLENGE = frozenset({"mysql_native_password", "client_ed25519", "caching_sha2_password"})
REVEALING = frozenset({"mysql_clear_password", "dialog", "sha256_password"})
OK, EXTRA, SWITCH, ERROR = 0x00, 0x01, 0xFE, 0xFF
FAST_AUTH_OK, FULL_AUTH = 3, 4  # caching_sha2_password's answers to the fast path


class AuthGuard:
    """Given the greeting's plugin and capabilities and whether the password may be revealed,
    ``check`` each packet the server sends after the greeting until authentication ends."""

    def __init__(self, plugin: str, capabilities: int, reveal_allowed: bool) -> None:
        self.plugin = plugin
        self.capabilities = capabilities
        self.reveal_allowed = reveal_allowed
        self.done = False

    def check(self, payload: bytes) -> None:
        """Return if the client may answer this packet; raise ProtocolError naming the
        authentication method it refuses otherwise.  Ignores everything after OK or error."""
        if self.done or not payload:
            return
        kind = payload[0]
        if kind in (OK, ERROR):
            self.done = True
        elif kind == SWITCH:
            self._switch(payload)
        elif kind == EXTRA and self.plugin == "caching_sha2_password":
            if payload[1:2] == bytes([FULL_AUTH]):
                self._reveal("caching_sha2_password full authentication")
        elif kind == EXTRA and self.plugin == "sha256_password":
            self._reveal("sha256_password")

    def _switch(self, payload: bytes) -> None:
        name = payload[1:].split(b"\0", 1)[0].decode("ascii", "replace")
        if len(payload) == 1 or not self.capabilities & CLIENT_PLUGIN_AUTH:
            raise ProtocolError("server asks for a pre-4.1 password hash (mysql_old_password); "
                                "refused, it is as good as the password")
        if name == "mysql_old_password":
            raise ProtocolError("server asks for mysql_old_password; refused, its hash is as "
                                "good as the password")
        if name in REVEALING:
            self._reveal(name)
        elif name not in CHALLENGE:
            raise ProtocolError(f"server asks for authentication plugin {name[:40]!r}; refused")
        self.plugin = name

    def _reveal(self, what: str) -> None:
        if not self.reveal_allowed:
            raise ProtocolError(f"server asks for {what}, which sends the password in clear "
                                "text; refused (allow_cleartext_password = true allows it "
                                "over a unix socket)")
