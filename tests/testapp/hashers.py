from livedata.accounts.hashers import DigestPBKDF2PasswordHasher


class FastDigestPBKDF2PasswordHasher(DigestPBKDF2PasswordHasher):
    """The same format with few iterations (tests create and log in many users)."""

    iterations = 1000
