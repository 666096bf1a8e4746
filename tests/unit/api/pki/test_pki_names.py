"""api.pki.names: the command line's lists without cryptography, the same as the PKI modules use."""

from __future__ import annotations

from api.pki import ca, crl, export, names
from api.pki.profiles import PROFILES


def test_profile_names_are_the_profiles_in_order() -> None:
    assert tuple(PROFILES) == names.PROFILE_NAMES


def test_pki_modules_use_the_one_list_of_each() -> None:
    assert ca.CA_KEY_KINDS is names.CA_KEY_KINDS
    assert ca.DEVICE_KEY_KINDS is names.DEVICE_KEY_KINDS
    assert ca.DEFAULT_MAX_VALIDITY_DAYS == names.DEFAULT_MAX_VALIDITY_DAYS
    assert crl.REASON_NAMES is names.REASON_NAMES
    assert export.EXPORT_FORMATS is names.EXPORT_FORMATS
    assert {name.lower() for name in names.REASON_NAMES} == set(crl.REASONS)


def test_the_http_api_offers_the_same_names() -> None:
    """The API's request schemas spell the names as Literal types (an enum in its OpenAPI document)."""
    from typing import get_args

    from api.schemas.pki import ProfileName, ReasonName

    assert get_args(ProfileName) == names.PROFILE_NAMES
    assert get_args(ReasonName) == names.REASON_NAMES
