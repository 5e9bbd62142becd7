"""Generate pii_secrets.jsonl: fake PII and secrets with valid checksums, plus near-misses.

    python benchmarks/data/guardrails/make_pii_secrets.py

Every value is synthetic (random digits with a computed Luhn digit, IBAN check digits computed
with mod-97, random key bodies); none belongs to anyone. Near-misses look alike but must not be
flagged: a wrong Luhn or IBAN check digit, SSNs in never-issued ranges, wrong DNI letters, slugs
after ``sk-``, low-entropy ``password:`` values, public-key PEM headers. The seed is fixed, so
the file is reproducible.
"""

from __future__ import annotations

import base64
import json
import random
import string
from pathlib import Path

HERE = Path(__file__).resolve().parent
rng = random.Random(20261124)
ALNUM = string.ascii_letters + string.digits
LOWER = string.ascii_lowercase
PUBLIC_KEY = (
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
)


def rand(chars: str, n: int) -> str:
    return "".join(rng.choice(chars) for _ in range(n))


def ssn(area: int) -> str:
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def luhn_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def card(prefix: str, length: int) -> str:
    body = prefix + rand(string.digits, length - len(prefix) - 1)
    return body + luhn_digit(body)


def group(number: str, sep: str, sizes: tuple[int, ...]) -> str:
    parts, i = [], 0
    for size in sizes:
        parts.append(number[i : i + size])
        i += size
    return sep.join(parts)


def iban(country: str, bban: str) -> str:
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def dni() -> str:
    n = rng.randrange(10_000_000, 99_999_999)
    return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"


ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23]


def fiscal_code() -> str:
    body = (
        rand(string.ascii_uppercase, 6) + rand(string.digits, 2) + rng.choice("ABCDEHLMPRST")
        + rand(string.digits, 2) + rng.choice(string.ascii_uppercase) + rand(string.digits, 3)
    )  # fmt: skip
    total = sum(
        ODD[int(c) if c.isdigit() else ord(c) - 65]
        if i % 2 == 0
        else (int(c) if c.isdigit() else ord(c) - 65)
        for i, c in enumerate(body)
    )
    return body + chr(65 + total % 26)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt() -> str:
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64url(
        json.dumps({"sub": rand(string.digits, 8), "name": "Test User", "iat": 1700000000}).encode()
    )
    return f"{header}.{payload}.{b64url(rng.randbytes(32))}"


def pem() -> str:
    body = base64.b64encode(rng.randbytes(600)).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN RSA PRIVATE KEY-----\n{lines}\n-----END RSA PRIVATE KEY-----"


def positives() -> list[tuple[str, str]]:
    values: list[tuple[str, str]] = []
    for _ in range(5):
        values.append(("credit_card", group(card("4", 16), " ", (4, 4, 4, 4))))
        values.append(("credit_card", group(card(str(rng.randint(51, 55)), 16), "-", (4, 4, 4, 4))))
        values.append(("credit_card", group(card(rng.choice(["34", "37"]), 15), " ", (4, 6, 5))))
        values.append(("credit_card", card("6011", 16)))
        values.append(("iban", iban("DE", rand(string.digits, 18))))
        values.append(
            (
                "iban",
                group(
                    iban("GB", rand(string.ascii_uppercase, 4) + rand(string.digits, 14)),
                    " ",
                    (4,) * 5 + (2,),
                ),
            )
        )
        values.append(("iban", iban("FR", rand(string.digits, 23))))
        values.append(
            (
                "iban",
                group(
                    iban("NL", rand(string.ascii_uppercase, 4) + rand(string.digits, 10)),
                    " ",
                    (4,) * 4 + (2,),
                ),
            )
        )
        values.append(
            (
                "us_ssn",
                ssn(rng.choice([rng.randint(1, 665), rng.randint(667, 899)])),
            )
        )
        values.append(("national_id", dni()))
        values.append(("national_id", fiscal_code()))
        values.append(
            (
                "email",
                f"{rand(LOWER, 6)}.{rand(LOWER, 5)}@{rand(LOWER, 7)}.com",
            )
        )
        values.append(("ip_address", ".".join(str(rng.randint(1, 254)) for _ in range(4))))
        values.append(("ip_address", ":".join(f"{rng.randint(0, 65535):x}" for _ in range(8))))
        values.append(("api_key", "sk-proj-" + rand(ALNUM, 48)))
        values.append(("api_key", "sk-ant-api03-" + rand(ALNUM + "_-", 93) + "AA"))
        values.append(
            ("aws_access_key_id", "AKIA" + rand(string.ascii_uppercase + string.digits, 16))
        )
        values.append(
            ("aws_secret_access_key", "aws_secret_access_key = " + rand(ALNUM + "/+", 40))
        )
        values.append(("github_token", "ghp_" + rand(ALNUM, 36)))
        values.append(
            (
                "slack_token",
                f"xoxb-{rand(string.digits, 12)}-{rand(string.digits, 13)}-{rand(ALNUM, 24)}",
            )
        )
        values.append(("google_api_key", "AIza" + rand(ALNUM + "_-", 35)))
        values.append(("jwt", jwt()))
        values.append(("secret", f'API_KEY="{rand(ALNUM, 32)}"'))
    values += [
        ("phone", "+1 415 555 0134"), ("phone", "+44 20 7946 0958"), ("phone", "+49 30 901820"),
        ("phone", "+33 1 42 68 53 00"), ("phone", "+81 3-1234-5678"), ("phone", "(415) 555-0199"),
        ("phone", "+91 98765 43210"), ("phone", "+61 2 9374 4000"), ("private_key", pem()),
        ("private_key", pem().replace("RSA ", "")),
    ]  # fmt: skip
    return values


def near_misses() -> list[tuple[str, str]]:
    values: list[tuple[str, str]] = []
    for _ in range(5):
        good = card("4", 16)
        values.append(
            ("credit_card", group(good[:-1] + str((int(good[-1]) + 1) % 10), " ", (4, 4, 4, 4)))
        )
        good_iban = iban("DE", rand(string.digits, 18))
        values.append(
            ("iban", good_iban[:2] + f"{(int(good_iban[2:4]) + 1) % 100:02d}" + good_iban[4:])
        )
        values.append(
            (
                "us_ssn",
                ssn(rng.choice([0, 666, rng.randint(900, 999)])),
            )
        )
        good_dni = dni()
        values.append(("national_id", good_dni[:-1] + ("A" if good_dni[-1] != "A" else "B")))
        values.append(("order_number", f"order #{rand(string.digits, 16)}"))
    values += [
        ("us_ssn", "123-00-4567"), ("us_ssn", "123-45-0000"), ("ip_address", "256.12.1.1"),
        ("ip_address", "version 1.2.3"), ("email", "user at example dot com"), ("email", "@handle"),
        ("api_key", "sk-learn-compatible-estimator-design"), ("aws_access_key_id", "AKIA1234"),
        ("github_token", "ghp_short"), ("secret", "password: hunter2"),
        ("secret", "key = my_dictionary_key_name_here"), ("jwt", "eyJhbGciOiJIUzI1NiJ9"),
        ("private_key", PUBLIC_KEY),
        ("phone", "+12"), ("credit_card", "1234 5678 9012 3456"), ("timestamp", "1700000000123"),
    ]  # fmt: skip
    return values


TEMPLATES = [
    "Please update my details: {v}. Thanks!",
    "Here is the value you asked for: {v}",
    "{v} is what the form shows, is that correct?",
    "config:\n  value: {v}\n  retries: 3",
]


def main() -> None:
    out = HERE / "pii_secrets.jsonl"
    with out.open("w", encoding="utf-8") as handle:
        for label, items in (("positive", positives()), ("near_miss", near_misses())):
            for index, (kind, value) in enumerate(items):
                text = TEMPLATES[index % len(TEMPLATES)].format(v=value)
                record = {
                    "text": text,
                    "label": label,
                    "family": kind,
                    "value": value,
                    "source": "corral-generated (synthetic)",
                }
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
