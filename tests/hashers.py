"""bcrypt at its lowest cost for the test suite: the same algorithm and stored format as production
(bcrypt_sha256$...), a fraction of the time per hash."""

from django.contrib.auth.hashers import BCryptSHA256PasswordHasher


class FastBCryptSHA256PasswordHasher(BCryptSHA256PasswordHasher):
    rounds = 4
