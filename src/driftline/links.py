"""Links to a model's HTML report that open in a browser without an API key: signed and expiring.

A notification (Slack, PagerDuty, a webhook) links the alert's report; whoever follows it sends
no ``Authorization`` header. With API keys configured, the link carries ``exp`` (epoch ms) and
``sig``, an HMAC over the model and the query under a key derived from the service's API keys (a
key rotation revokes every link), and ``GET /v1/models/{id}/report`` accepts exactly that query.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

LINK_TTL_S = 7 * 86_400.0


def link_key(api_keys: Iterable[str]) -> bytes:
    return hashlib.sha256(b"driftline report links\x00" + "\x00".join(sorted(api_keys)).encode()).digest()


def signature(key: bytes, model: str, params: Mapping[str, str]) -> str:
    signed = urlencode(sorted((k, v) for k, v in params.items() if k != "sig"))
    return hmac.new(key, f"{model}?{signed}".encode(), hashlib.sha256).hexdigest()[:32]


def verify(key: bytes, model: str, params: Mapping[str, str], now: float) -> bool:
    """A link this service signed for ``model`` and exactly these parameters, not expired."""
    exp = params.get("exp", "")
    if not exp.isdigit() or int(exp) < now * 1000:
        return False
    return hmac.compare_digest(signature(key, model, params), params.get("sig", ""))


@dataclass(frozen=True)
class ReportLinks:
    base: str  # the API's public base URL
    key: bytes | None = None  # None: the API asks for no key (open mode)
    ttl_s: float = LINK_TTL_S

    def url(self, model: str, params: Mapping[str, str], now: float, fragment: str = "") -> str:
        query = dict(params)
        if self.key is not None:
            query["exp"] = str(int((now + self.ttl_s) * 1000))
            query["sig"] = signature(self.key, model, query)
        path = f"/v1/models/{quote(model, safe='')}/report"
        return f"{self.base.rstrip('/')}{path}?{urlencode(query)}{fragment}"
