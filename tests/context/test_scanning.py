"""Secret scanning of text: detect-secrets' rules (and HexaHub's few), the markers that
replace values, and the line gates that keep it fast without changing what it finds."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from hexahub.context import files, scanning
from tests.context.helpers import (
    AWS_KEY_ID,
    PAYMENTS_SOURCE,
    PRIVATE_KEY,
    STRIPE_ENV_KEY,
    STRIPE_KEY,
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _hex(seed: str, n: int) -> str:
    return (hashlib.sha256(seed.encode()).hexdigest() * 2)[:n]


def _alnum(seed: str, n: int) -> str:
    raw = base64.b64encode(hashlib.sha512(seed.encode()).digest() * 2).decode()
    return "".join(c for c in raw if c.isalnum())[:n]


_JWT = ".".join(
    [
        _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()),
        _b64url(json.dumps({"sub": "1234567890", "name": "Ada"}).encode()),
        _b64url(hashlib.sha256(b"signature").digest()),
    ]
)
_AZURE = base64.b64encode(hashlib.sha512(b"azure").digest() + b"0123").decode()[:88]

# One line per rule, in the file type it usually sits in; each value is made up.
SAMPLES: dict[str, tuple[str, str]] = {
    "AWS Access Key": ("settings.py", f'key = "AKIA{_alnum("aws", 16).upper()}"'),
    "Artifactory Credentials": ("settings.py", f'ARTIFACTORY = "AKC{_alnum("art", 14)}"'),
    "Azure Storage Account access key": (
        "settings.py",
        f'conn = "DefaultEndpointsProtocol=https;AccountName=x;AccountKey={_AZURE}"',
    ),
    "Basic Auth Credentials": (
        "settings.py",
        f'DB = "postgres://admin:{_alnum("pw", 12)}@db.example.org/app"',
    ),
    "Cloudant Credentials": ("settings.py", f'cloudant_password = "{_hex("cl", 64)}"'),
    "Discord Bot Token": (
        "bot.py",
        f'TOKEN = "M{_alnum("d1", 23)}.{_alnum("d2", 6)}.{_alnum("d3", 27)}"',
    ),
    "GitHub Token": ("ci.py", f'TOKEN = "ghp_{_alnum("gh", 36)}"'),
    "GitLab Token": ("ci.py", f'TOKEN = "glpat-{_alnum("gl", 20)}"'),
    "IBM Cloud IAM Key": ("settings.py", f'ibm_cloud_iam_key = "{_alnum("iam", 44)}"'),
    "IBM COS HMAC Credentials": (
        "settings.py",
        f'cos_hmac_secret_access_key = "{_hex("cos", 48)}"',
    ),
    "JSON Web Token": ("client.py", f'AUTH = "{_JWT}"'),
    "Mailchimp Access Key": ("settings.py", f'MAILCHIMP = "{_hex("mc", 32)}-us12"'),
    "NPM tokens": (".npmrc", f"//registry.npmjs.org/:_authToken=npm_{_alnum('npm', 36)}"),
    "OpenAI Token": ("ai.py", f'OPENAI = "sk-{_alnum("o1", 20)}T3BlbkFJ{_alnum("o2", 20)}"'),
    "PyPI Token": (".pypirc", f"password = pypi-AgEIcHlwaS5vcmc{_alnum('pypi', 80)}"),
    "SendGrid API Key": ("mail.py", f'SENDGRID = "SG.{_alnum("s1", 22)}.{_alnum("s2", 43)}"'),
    "Slack Token": (
        "chat.py",
        f'SLACK = "xoxb-123456789012-1234567890123-{_alnum("sl", 24).lower()}"',
    ),
    "SoftLayer Credentials": ("settings.py", f'softlayer_api_key = "{_hex("softl", 64)}"'),
    "Square OAuth Secret": ("pay.py", f'SQUARE = "sq0csp-{_alnum("sq", 43)}"'),
    "Stripe Access Key": ("pay.py", f'STRIPE = "{STRIPE_KEY}"'),
    "Telegram Bot Token": ("bot.py", f'TELEGRAM = "110201543:{_alnum("tg", 35)}"'),
    "Twilio API Key": ("sms.py", f'TWILIO = "SK{_hex("tw", 32)}"'),
    "Secret Keyword": ("settings.py", f'password = "{_alnum("kw", 14)}"'),
    "Private Key": ("deploy.py", f'KEY = """{PRIVATE_KEY}"""'),
    "HexaHub API Key": ("tool.py", f'KEY = "hh_{_hex("hh", 8)}_{_alnum("hh2", 43)}"'),
    "Anthropic API Key": ("tool.py", f'KEY = "sk-ant-api03-{_alnum("ant", 90)}"'),
    "Google API Key": ("tool.py", f'KEY = "AIza{_alnum("g", 35)}"'),
}


@pytest.mark.parametrize("rule", sorted(SAMPLES))
def test_every_rule_finds_its_format_and_the_value_is_replaced(rule: str) -> None:
    path, line = SAMPLES[rule]
    text = f"import os\n\n{line}\nprint('done')\n"
    scan = scanning.scan_text(path, text)
    found = {d.rule: d for d in scan.detections}
    assert rule in found, (rule, scan.detections)
    value = found[rule].value
    assert len(value) >= 8 and value in text
    assert value not in scan.text
    assert scanning.marker(rule) in scan.text
    # Line numbers stay put: citations and symbols still point at the right lines.
    assert found[rule].line == 3
    assert scan.text.count("\n") == text.count("\n")
    assert scan.text.splitlines()[-1] == "print('done')"


def test_the_line_gates_never_change_what_is_found() -> None:
    """The gates only skip lines no rule can match: scanning every line with every rule
    finds the same, on the samples and on real code."""
    texts = [(path, f"x = 1\n{line}\n") for path, line in SAMPLES.values()]
    texts.append(("app/payments.py", PAYMENTS_SOURCE))
    package = Path(scanning.__file__).resolve().parent
    texts += [(str(p.relative_to(package)), p.read_text()) for p in sorted(package.glob("*.py"))]
    for path, text in texts:
        lines = text.split("\n")
        assert scanning._find(path, lines) == scanning._find(path, lines, gated=False), path


def test_a_value_is_hidden_wherever_it_appears_and_the_tail_of_a_token_too() -> None:
    scan = scanning.scan_text("app/payments.py", PAYMENTS_SOURCE)
    assert [(d.rule, d.line) for d in scan.detections] == [
        ("Stripe Access Key", 3),
        ("AWS Access Key", 11),
    ]
    for value in (STRIPE_KEY, AWS_KEY_ID, STRIPE_KEY[:32], STRIPE_KEY[-8:]):
        assert value not in scan.text
    assert scan.text.count(scanning.marker("Stripe Access Key")) == 2
    assert "def charge_customer(amount, api_key=" in scan.text


def test_dotenv_files_are_read_as_configuration() -> None:
    text = f"STRIPE_KEY={STRIPE_ENV_KEY}\nDB_PASSWORD=Tr0ub4dor-and-3\nDEBUG=true\n"
    scan = scanning.scan_text(".env", text)
    assert [(d.rule, d.line) for d in scan.detections] == [
        ("Stripe Access Key", 1),
        ("Secret Keyword", 2),
    ]
    assert scan.text.endswith("DEBUG=true\n")


def test_what_is_not_a_credential_is_left_alone() -> None:
    text = (
        "password = get_password()\n"  # a call, not a value
        "token = request.headers['Authorization']\n"
        f'client = Client("{STRIPE_KEY}")  # a key inside a call still counts\n'
        'password = "hunter2hunter2"  # pragma: allowlist secret\n'
        "checksum = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'\n"
        'if line.startswith("-----BEGIN RSA PRIVATE KEY-----"):\n'
        "    parse(line)\n"
    )
    scan = scanning.scan_text("client.py", text)
    assert [(d.rule, d.line) for d in scan.detections] == [
        ("Stripe Access Key", 3),
        ("Private Key", 6),
    ]
    assert "hunter2hunter2" in scan.text and "e3b0c44298fc1c149afbf4c" in scan.text
    assert scan.text.splitlines()[6] == "    parse(line)"


def test_a_private_key_block_is_one_finding_and_every_line_of_it_is_hidden() -> None:
    text = f"# deploy key\n{PRIVATE_KEY}\n"
    scan = scanning.scan_text("deploy/key.txt", text)
    [found] = scan.detections
    assert (found.rule, found.line) == ("Private Key", 2)
    assert found.value == PRIVATE_KEY.strip()
    for line in PRIVATE_KEY.strip().splitlines():
        assert line not in scan.text
    assert scan.text.count("\n") == text.count("\n")


def test_findings_keep_a_keyed_fingerprint_never_the_value() -> None:
    [found] = scanning.scan_text("pay.py", f'STRIPE = "{STRIPE_KEY}"\n').detections
    assert STRIPE_KEY not in repr(found)
    one = scanning.fingerprint("instance-key-one-" + "x" * 32, found.value)
    assert one == scanning.fingerprint("instance-key-one-" + "x" * 32, STRIPE_KEY)
    assert one != scanning.fingerprint("instance-key-two-" + "x" * 32, STRIPE_KEY)
    assert one != hashlib.sha256(STRIPE_KEY.encode()).hexdigest()
    assert len(one) == 64


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        (".env", True),
        ("config/.env.production", True),
        ("deploy/prod.env", True),
        (".envrc", True),
        ("certs/server.pem", True),
        ("certs/server.key", True),
        ("home/.ssh/id_rsa", True),
        ("id_ed25519", True),
        ("id_ecdsa", True),
        ("bundle.p12", True),
        ("bundle.pfx", True),
        (".npmrc", True),
        (".pypirc", True),
        ("src/env.py", False),
        ("docs/keys.md", False),
        ("id_rsa.pub", False),
        ("environment.yml", False),
    ],
)
def test_secrets_files_are_never_indexed(path: str, secret: bool) -> None:
    assert files.is_secrets_file(path) is secret
    text, reason = files.check_content(path, b"VALUE=1\n", max_bytes=1000)
    if secret:
        assert (text, reason) == (None, files.SECRETS_FILE)
    else:
        assert reason is None
