"""passgate: signed QR passes for gates and turnstiles, verified offline.

>>> from passgate import generate_private_key, issue_pass, verify_pass, TrustStore
>>> key = generate_private_key()
>>> trust = TrustStore(); _ = trust.add(key.public_key())
>>> text = issue_pass(key, valid_from=0, valid_until=2**31, zones=["A"])
>>> verify_pass(text, trust).zones
('A',)
"""

from .keys import KeyFileError, TrustedKey, TrustStore, generate_private_key, key_id
from .passes import Pass, PassRefused, check_time, issue_pass, verify_pass, verify_signature
from .reasons import Reason

__version__ = "0.1.0"

__all__ = [
    "KeyFileError",
    "Pass",
    "PassRefused",
    "Reason",
    "TrustStore",
    "TrustedKey",
    "__version__",
    "check_time",
    "generate_private_key",
    "issue_pass",
    "key_id",
    "verify_pass",
    "verify_signature",
]
