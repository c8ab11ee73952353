"""The one secret scrubber: every text that is recorded (errors, logs, judgments, reports, manifests) goes through
:func:`scrub` first.

Why every credential variable of the environment, not just the key a component was configured with: the key a
request carries is not always the one the config names. With ``api_key_env`` unset, the direct-HTTP transport sends
``OPENAI_API_KEY`` and litellm reads whichever provider variable it routes to (``ANTHROPIC_API_KEY``,
``AZURE_API_KEY``, ...); ``huggingface_hub`` sends ``HF_TOKEN``. A server that echoes the ``Authorization`` header in
its error body would otherwise put that key into ``judgments.jsonl`` and the ``--html`` page (issue 14 §4). So
:func:`secret_values` collects the value of every variable that may hold a credential, whichever it is, plus the
keys a component read from a variable of any name (:func:`remember_secret`), and :func:`scrub` masks them all, and
also anything shaped like a credential (``Bearer <token>``, ``Authorization: ...``, ``api_key=...``).

A credential variable is one whose name ends in ``_KEY``, ``_API_KEY``, ``_TOKEN``, ``_API_TOKEN``, ``_PASSWORD``
or contains ``_SECRET`` / ``_ACCESS_KEY``, or one of :data:`KNOWN_SECRET_VARIABLES`. Values shorter than
:data:`MIN_SECRET_LENGTH` characters are never treated as secrets, so a ``*_TOKEN=1`` or ``*_PASSWORD=true``
cannot make every "1" or "true" in a report disappear. The remembered keys are process-wide on purpose: a key one
component read must be masked by every sink, including those that never see that component.

For many texts at once (a batch of judgments) take a :class:`Scrubber` snapshot: reading the environment costs
more than masking a short text.

Only the standard library is imported: this runs on every error path.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Iterable, Mapping

#: what a secret is replaced with
MASK = "***"

#: values shorter than this are not secrets (flags such as "1", "true", "yes")
MIN_SECRET_LENGTH = 8

#: names of variables that may hold a credential, matched case-insensitively against the whole name
SECRET_NAME_PATTERN = re.compile(
    r".*(_API_KEY|_API_TOKEN|_KEY|_TOKEN|_SECRET.*|_ACCESS_KEY.*|_PASSWORD|_PASSWD)", re.IGNORECASE)

#: the variables litellm, the OpenAI SDK, huggingface_hub and the cloud SDKs read (most also match the pattern;
#: listed so that none depends on it)
KNOWN_SECRET_VARIABLES = (
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_AD_TOKEN",
    "HUGGINGFACE_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "COHERE_API_KEY", "CO_API_KEY", "MISTRAL_API_KEY",
    "GROQ_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "PALM_API_KEY", "TOGETHER_API_KEY", "TOGETHERAI_API_KEY",
    "REPLICATE_API_KEY", "REPLICATE_API_TOKEN", "OPENROUTER_API_KEY", "DEEPSEEK_API_KEY", "XAI_API_KEY",
    "FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "PERPLEXITYAI_API_KEY", "DEEPINFRA_API_KEY", "ANYSCALE_API_KEY",
    "VOYAGE_API_KEY", "NVIDIA_NIM_API_KEY", "CEREBRAS_API_KEY", "DATABRICKS_TOKEN", "WATSONX_APIKEY",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK", "LITELLM_MASTER_KEY", "WANDB_API_KEY",
)

#: keys a component read from a variable of any name (``api_key_env: MY_VAR``): masked for the rest of the process
_REMEMBERED: set[str] = set()

# credential-shaped text, masked even when the value is in no variable this process can see. A bearer token must
# be 8+ characters with a digit, so prose ("the Bearer instruments") is left alone.
_BEARER = re.compile(r"\b(Bearer)(\s+)(?=[A-Za-z._~+/=:-]*\d)([A-Za-z0-9._~+/=:-]{8,})", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"\b((?:Proxy-)?Authorization)([\"']?\s*[:=]\s*[\"']?)((?:Bearer|Basic|Token|Digest)\s+)?"
                          r"([^\s\"',;}]+)", re.IGNORECASE)
_KEY_VALUE = re.compile(r"\b([\w-]*?(?:api[_-]?key|apikey|api[_-]?token|access[_-]?token|auth[_-]?token|"
                        r"secret[_-]?key|client[_-]?secret|password))\b([\"']?\s*[:=]\s*[\"']?)([^\s\"',;&}]+)",
                        re.IGNORECASE)


#: words without which no credential-shaped pattern can match (a cheap gate before the regular expressions)
_TRIGGERS = ("bearer", "authorization", "key", "token", "secret", "password")


@functools.lru_cache(maxsize=4096)  # scrub() runs per judgment: the names are few, the checks many
def is_secret_name(name: str) -> bool:
    """Whether the environment variable ``name`` may hold a credential."""
    return name.upper() in KNOWN_SECRET_VARIABLES or SECRET_NAME_PATTERN.fullmatch(name) is not None


def remember_secret(value: str | None) -> None:
    """Mask ``value`` in everything :func:`scrub` sees from now on (a key read from a variable of any name)."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        _REMEMBERED.add(value)


def secret_values(extra: Iterable[str | None] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    """Every value that must not be recorded, longest first: the values of the environment's credential
    variables, the remembered keys and ``extra``; values shorter than :data:`MIN_SECRET_LENGTH` are skipped.

    Longest first, so a key that contains another (``sk-abc...`` and ``abc...``) is masked whole."""
    env = os.environ if environ is None else environ
    values = {v for name, v in env.items() if v and is_secret_name(name)}
    values |= _REMEMBERED
    values |= {v for v in extra if v}
    return sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=lambda v: (-len(v), v))


def scrub(text: str, extra: Iterable[str | None] = ()) -> str:
    """``text`` with every secret value (see :func:`secret_values`) and every credential-shaped substring
    (``Bearer <token>``, ``Authorization: <value>``, ``api_key=<value>``) replaced by ``***``."""
    return _scrub(text, secret_values(extra)) if text else text


class Scrubber:
    """:func:`scrub` with the secret values read once, for a batch of texts (reading the environment costs more
    than masking a short text): ``clean = Scrubber(); rows = [clean(r) for r in raws]``. A variable set after the
    snapshot is not seen; take a new one per batch."""

    def __init__(self, extra: Iterable[str | None] = ()) -> None:
        self.values = secret_values(extra)

    def __call__(self, text: str) -> str:
        return _scrub(text, self.values) if text else text


def scrub_data(data: object, extra: Iterable[str | None] = ()) -> object:
    """A copy of ``data`` (JSON-like: mappings, lists, tuples, strings) with :func:`scrub` applied to every string,
    keys included; for records written as JSON (judgments, manifests)."""
    clean = Scrubber(extra)  # the environment is read once for the whole structure

    def walk(node: object) -> object:
        if isinstance(node, str):
            return clean(node)
        if isinstance(node, Mapping):
            return {walk(k): walk(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return type(node)(walk(v) for v in node)
        return node

    return walk(data)


def _scrub(text: str, values: list[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    lower = text.lower()
    if not any(word in lower for word in _TRIGGERS):  # the common case (a judge's answer): no regex work
        return text
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _AUTH_HEADER.sub(_mask_auth, text)
    return _KEY_VALUE.sub(lambda m: m.group(0) if m.group(3) == MASK else f"{m.group(1)}{m.group(2)}{MASK}", text)


def _mask_auth(match: re.Match[str]) -> str:
    if match.group(4) == MASK:  # already masked (a bearer token)
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{match.group(3) or ''}{MASK}"
