"""The bulk-import fast path of record validation (vault.records.validate.fast_validate) enforces
exactly the rules of the pydantic models: whatever it accepts the model accepts, normalised to the
same fields in the same order; whatever the model refuses it does not accept (it answers None and
the model names the error). Inputs come from hypothesis, biased toward the edges of each rule:
lengths at the bounds, control characters, line breaks, tabs, carriage returns, lone surrogates,
spaces around custom names, built-in names, bools where ints go, near-miss addresses and seeds."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vault.errors import InvalidInput
from vault.records import FIELDS, KINDS
from vault.records.validate import _SPECS, fast_validate, model_validate, validate

REFUSED = object()

# characters each rule treats differently, and ordinary ones
EDGE_CHARS = st.sampled_from(
    ["a", "Z", "0", " ", "\t", "\n", "\r", "\x00", "\x0b", "\x0c", "\x1f", "\x7f", "\x85", "\u2028",
     "\ud800", "\udfff", "é", "😀", ".", "/", ":", "@", "="]
)  # fmt: skip
TEXT = st.one_of(
    st.text(EDGE_CHARS, max_size=8),
    st.text(max_size=12),
    st.integers(0, 3).map(lambda n: "x" * [1, 32, 64, 256][n]),
    st.integers(0, 4).map(lambda n: "y" * [0, 7, 8, 33, 65, 257][n]),
    st.sampled_from(
        [
            "10.0.0.1", " 10.0.0.1 ", "10.0.0.0/24", "::1", "fe80::1%eth0", "2001:db8::/32", "10.0.0.256",
            "a@b.cd", "a@b", "JBSWY3DPEHPK3PXP", "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP", "otpauth://hotp/x",
            "tags", "password", " name", "name ", "custom",
        ]
    ),
)  # fmt: skip
SCALAR = st.one_of(
    TEXT,
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 22, 4094, 4095, 65535, 65536, -1, 2**63]),
    st.floats(allow_nan=False, max_value=1e6, min_value=-1e6),
)
CUSTOM_ENTRY = st.one_of(
    st.fixed_dictionaries(
        {"value": TEXT}, optional={"secret": st.one_of(st.booleans(), st.none(), st.just(1))}
    ),
    st.dictionaries(st.sampled_from(["value", "secret", "other"]), SCALAR, max_size=3),
    SCALAR,
)
CUSTOM = st.dictionaries(TEXT, CUSTOM_ENTRY, max_size=4)
VALUE = st.one_of(SCALAR, st.lists(TEXT, max_size=5), st.lists(SCALAR, max_size=3), CUSTOM)


@st.composite
def records(draw):
    kind = draw(st.sampled_from(KINDS))
    names = [f.name for f in FIELDS[kind]]
    fields = {}
    for name in draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names))):
        if name == "custom":
            fields[name] = draw(st.one_of(CUSTOM, VALUE))
        elif name in ("tags", "addresses", "dns_servers"):
            fields[name] = draw(st.one_of(st.lists(TEXT, max_size=6), VALUE))
        else:
            fields[name] = draw(VALUE)
    if draw(st.integers(0, 19)) == 0:
        fields[draw(st.sampled_from(["kind", "nope", "Tags", "password"]))] = draw(VALUE)
    return kind, fields


def _reference(kind, fields):
    try:
        return model_validate(kind, fields)
    except InvalidInput:
        return REFUSED


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
@example(("access", {"tags": ["a\rb"]}))
@example(("access", {"tags": ["a\tb"]}))
@example(("access", {"password": "a\rb\tc"}))
@example(("access", {"password": "a\nb"}))
@example(("note", {"text": "a\x00b\nc"}))
@example(("note", {"text": "\ud800"}))
@example(("network", {"addresses": ["10.0.0.1\x0b"], "gateway": " ::1 "}))
@example(("account", {"username": "u", "custom": {" x": {"value": "v"}}}))
@example(("account", {"username": "u", "custom": {"x": {"value": "a\x1fb"}}}))
@example(("access", {"port": True}))
@example(("network", {"notes": "", "addresses": None}))
@example(("note", {"text": "", "tags": None}))
def test_fast_path_accepts_only_what_the_model_accepts_and_normalises_alike(record):
    kind, fields = record
    fast = fast_validate(kind, fields)
    reference = _reference(kind, fields)
    if fast is not None:
        assert reference is not REFUSED, (kind, fields, fast)
        assert list(fast.items()) == list(reference.items()), (kind, fields)
    # the public entry point is the model's answer, whichever path gave it
    try:
        got = validate(kind, fields)
    except InvalidInput:
        got = REFUSED
    assert got == reference


VALID = [
    ("access", {"host": "10.0.0.1", "port": 22, "protocol": "ssh", "username": "admin", "password": "pw"}),
    (
        "access",
        {
            "url": "https://x",
            "api_token": "t\tok",
            "ssh_private_key": "-----\nkey\n-----",
            "totp": "JBSWY3DPEHPK3PXP",
        },
    ),
    (
        "account",
        {"username": "svc", "email": "a@b.cd", "password": "p", "tags": ["x", "y", "x"], "mfa_notes": "a\nb"},
    ),
    (
        "network",
        {
            "site": "HQ",
            "addresses": ["10.0.0.1/24", " ::1 "],
            "vlan": 10,
            "gateway": "10.0.0.1",
            "dns_servers": ["1.1.1.1"],
            "wifi_ssid": "ACME",
            "wifi_key": "12345678",
        },
    ),
    ("note", {"text": "", "custom": {"owner": {"value": "ops\nteam", "secret": True}, "id": {"value": "7"}}}),
    ("note", {"text": "runbook", "tags": [], "custom": {}}),
]


def test_the_fast_path_takes_the_records_an_import_carries():
    """Not a path that always says "not sure": ordinary records of every kind are taken by it,
    and come out as the model has them."""
    assert {kind for kind, _ in VALID} == set(KINDS)
    for kind, fields in VALID:
        fast = fast_validate(kind, fields)
        assert fast is not None, (kind, fields)
        assert list(fast.items()) == list(model_validate(kind, fields).items())


def test_specs_name_the_fields_of_the_table_in_order():
    for kind, fields in FIELDS.items():
        assert [s.name for s in _SPECS[kind]] == [f.name for f in fields], kind
