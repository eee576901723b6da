"""Authentication and transport: SigV4 on every request, optional access rules, TLS."""

from openkvs.server.auth.keys import AuthConfigError, load_keys, parse_keys
from openkvs.server.auth.middleware import Gate, gate_for, is_loopback
from openkvs.server.auth.rules import AccessRules, load_rules, parse_rules
from openkvs.server.auth.sigv4 import Received, Secret, verify
from openkvs.server.auth.tls import server_tls_context

__all__ = [
    "AccessRules",
    "AuthConfigError",
    "Received",
    "Secret",
    "Gate",
    "gate_for",
    "is_loopback",
    "load_keys",
    "load_rules",
    "parse_keys",
    "parse_rules",
    "server_tls_context",
    "verify",
]
