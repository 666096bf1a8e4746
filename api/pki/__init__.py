"""The device PKI: root and issuing CA, OT certificate profiles, CRLs, trust-list export, audit.

``ca`` holds the CA and its operations, ``csr`` the request checks, ``profiles`` the certificate
profiles, ``crl`` revocation, ``store`` the SQLite state, ``export`` the trust material and ``cli`` the
``zonewarden pki`` commands.
"""
