"""The names ``zonewarden pki`` offers on its command line, as plain data without ``cryptography``.

Every ``zonewarden`` command but replay and sniff registers all sub-commands, and the modules these
names belong to (ca, crl, export, profiles) import ``cryptography`` (~60 ms). They import the names
from here, so there is one list of each; the profile names are the keys of
``api.pki.profiles.PROFILES``, in its order (a test holds the two equal).
"""

from __future__ import annotations

from typing import Final

CA_KEY_KINDS: Final = ("rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384")
DEVICE_KEY_KINDS: Final = ("rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384")
DEFAULT_MAX_VALIDITY_DAYS: Final = 825

PROFILE_NAMES: Final = (
    "opcua-app",
    "mqtt-broker",
    "mqtt-client",
    "modbus-security",
    "tls-server",
    "tls-client",
)

# RFC 5280 §5.3.1 CRLReason names, as accepted on the command line (api.pki.crl maps them).
REASON_NAMES: Final = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "aACompromise",
)

EXPORT_FORMATS: Final = ("pem-bundle", "opcua-trustlist")
