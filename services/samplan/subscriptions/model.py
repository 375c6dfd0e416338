"""A Subscription resource (R4 + the backport IG's extensions) read into what delivery needs.

:class:`SubscriptionCheck` is the write check every Subscription passes (it
runs inside ``validate_resource`` like the identifier and profile checks, so
create, update, patch and transaction entries all go through it, and a bad
Subscription is a 422 OperationOutcome before anything is stored). It also
does what the server owns on write: ``status`` becomes ``requested`` (or stays
``off``), the payload content gets its default, the secret and the header
values are sealed (``Name: sealed:v1:...``, signing.py), so neither the stored
nor the served resource holds them in clear.

What is accepted (anything else is a 422 naming the element):

=================================  ==============================================
``criteria``                       a topic canonical this server serves
``criteria`` backport-filter-criteria  ``CarePlan?param=value[,value]`` or
                                   ``param=value`` with the topic's filter
                                   parameters (AND across filters, OR in a value)
``channel.type``                   ``rest-hook`` (no backport-channel-type)
``channel.endpoint``               http/https, public unless allowed (endpoints.py)
``channel.payload``                ``application/fhir+json`` (or ``application/json``)
``channel.payload`` backport-payload-content  ``empty`` | ``id-only`` (default) |
                                   ``full-resource``
``channel.header``                 ``Name: value``; not our own headers; the
                                   value is sealed (a sealed one sent back
                                   must open for that name and endpoint)
``channel`` backport-heartbeat-period  seconds, 1..86400
``channel`` backport-timeout       seconds, 1..60
``channel`` backport-max-count     events per notification, 1..100 (default 1)
``channel`` subscription-signing-secret  required, see signing.py
=================================  ==============================================
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson

from samplan.fhir.errors import Issue
from samplan.fhir.indexing import parse_reference
from samplan.fhir.resource import ID_PATTERN
from samplan.subscriptions.endpoints import EndpointGuard, check_endpoint
from samplan.subscriptions.signing import (
    EXT_SECRET,
    MAX_SECRET_LENGTH,
    MIN_SECRET_LENGTH,
    SIGNATURE_HEADER,
    SecretBox,
)
from samplan.subscriptions.topics import Topic, TopicRegistry

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
EXT_FILTER = BACKPORT + "backport-filter-criteria"
EXT_CONTENT = BACKPORT + "backport-payload-content"
EXT_HEARTBEAT = BACKPORT + "backport-heartbeat-period"
EXT_TIMEOUT = BACKPORT + "backport-timeout"
EXT_MAX_COUNT = BACKPORT + "backport-max-count"
EXT_CHANNEL_TYPE = BACKPORT + "backport-channel-type"

Content = Literal["empty", "id-only", "full-resource"]
CONTENTS: tuple[Content, ...] = ("empty", "id-only", "full-resource")
PAYLOAD_TYPES = ("application/fhir+json", "application/json")
MAX_TIMEOUT = 60
MAX_HEARTBEAT = 86_400
MAX_COUNT = 100
# Headers the server sets itself; a subscriber may not replace them.
RESERVED_HEADERS = frozenset({
    "content-type", "content-length", "host", "transfer-encoding", "connection",
    SIGNATURE_HEADER.lower(), "user-agent",
})
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")

# The filter parameters the matching code understands, and the kind of their values.
FILTER_KINDS: dict[str, tuple[Literal["reference", "token"], str]] = {
    "patient": ("reference", "Patient"),
    "organization": ("reference", "Organization"),
    "category": ("token", ""),
}


@dataclass(frozen=True, slots=True)
class FilterCriterion:
    """One filter parameter with its accepted values (any of them matches)."""

    name: str
    values: tuple[str, ...]  # "Patient/123"; tokens as "system|code" or "|code" or "code"


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """Everything delivery and matching need from a Subscription, as stored with its state."""

    topic: str
    filters: tuple[FilterCriterion, ...]
    endpoint: str
    headers: tuple[tuple[str, str], ...]  # values as stored: sealed (SecretBox.open_headers)
    content: Content
    heartbeat: int | None
    timeout: float | None
    max_count: int

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> ChannelConfig:
        data = orjson.loads(text)
        return cls(
            topic=data["topic"],
            filters=tuple(FilterCriterion(f["name"], tuple(f["values"]))
                          for f in data["filters"]),
            endpoint=data["endpoint"],
            headers=tuple((h[0], h[1]) for h in data["headers"]),
            content=data["content"],
            heartbeat=data["heartbeat"],
            timeout=data["timeout"],
            max_count=data["max_count"],
        )


def _extensions(element: Any, url: str) -> list[tuple[int, dict[str, Any]]]:
    if not isinstance(element, dict):
        return []
    return [(i, e) for i, e in enumerate(element.get("extension") or [])
            if isinstance(e, dict) and e.get("url") == url]


def _one_int(channel: dict[str, Any], url: str, key: str, low: int, high: int,
             issues: list[Issue]) -> int | None:
    found = _extensions(channel, url)
    if not found:
        return None
    index, ext = found[0]
    value = ext.get(key)
    where = f"Subscription.channel.extension[{index}]"
    if len(found) > 1:
        issues.append(Issue("value", f"{url.rsplit('/', 1)[-1]} may be given once.", (where,)))
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        issues.append(Issue("value", f"{url.rsplit('/', 1)[-1]} must be a {key} from {low} "
                                     f"to {high}.", (where,)))
        return None
    return value


def parse_filter(text: object, topic: Topic, where: str, base_url: str,
                 issues: list[Issue]) -> list[FilterCriterion]:
    """``CarePlan?patient=Patient/1&category=x`` (or without ``CarePlan?``) into criteria."""
    if not isinstance(text, str) or not text.strip():
        issues.append(Issue("value", "A filter criteria needs a valueString such as "
                                     "'CarePlan?patient=Patient/123'.", (where,)))
        return []
    query = text.strip()
    if "?" in query:
        resource_type, query = query.split("?", 1)
        if resource_type not in topic.filter_types:
            allowed = ", ".join(sorted(topic.filter_types)) or "none"
            issues.append(Issue(
                "not-supported",
                f"Filters of topic {topic.url} apply to {allowed}, not {resource_type!r}.",
                (where,),
            ))
            return []
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        issues.append(Issue("value", f"Cannot read the filter criteria {text!r}.", (where,)))
        return []
    criteria = []
    for name, raw in pairs:
        definition = topic.filters.get(name)
        if definition is None or name not in FILTER_KINDS:
            known = ", ".join(sorted(topic.filters)) or "none"
            issues.append(Issue(
                "not-supported",
                f"Topic {topic.url} cannot filter by {name!r} (it can by: {known}).",
                (where,),
            ))
            continue
        kind, target = FILTER_KINDS[name]
        values: list[str] = []
        for value in raw.split(","):
            value = value.strip()
            if kind == "reference":
                parsed = parse_reference(value, base_url) if "/" in value else (target, value)
                if parsed is None or parsed[0] != target or not ID_PATTERN.match(parsed[1]):
                    issues.append(Issue("value", f"Filter {name} takes {target}/[id], "
                                                 f"not {value!r}.", (where,)))
                    continue
                values.append(f"{parsed[0]}/{parsed[1]}")
            else:
                if not value or value.endswith("|"):
                    issues.append(Issue("value", f"Filter {name} takes a token "
                                                 f"(system|code or code), not {value!r}.",
                                        (where,)))
                    continue
                values.append(value)
        if values:
            criteria.append(FilterCriterion(name, tuple(values)))
    return criteria


def read_config(
    resource: dict[str, Any], topics: TopicRegistry, *, base_url: str, allow_private: bool
) -> tuple[ChannelConfig | None, list[Issue]]:
    """The delivery configuration of a Subscription, or the issues that prevent it."""
    issues: list[Issue] = []
    criteria = resource.get("criteria")
    topic = topics.get(criteria) if isinstance(criteria, str) else None
    if topic is None:
        known = ", ".join(sorted(t.url for t in topics)) or "none"
        issues.append(Issue(
            "not-supported" if isinstance(criteria, str) else "required",
            f"Subscription.criteria must name a SubscriptionTopic this server serves "
            f"({known}); got {criteria!r}.",
            ("Subscription.criteria",),
        ))
    filters: list[FilterCriterion] = []
    if topic is not None:
        for index, ext in _extensions(resource.get("_criteria"), EXT_FILTER):
            filters.extend(parse_filter(ext.get("valueString"), topic,
                                        f"Subscription.criteria.extension[{index}]", base_url,
                                        issues))
    channel = resource.get("channel")
    if not isinstance(channel, dict):
        issues.append(Issue("required", "Subscription.channel is required.",
                            ("Subscription.channel",)))
        return None, issues
    channel_type = channel.get("type")
    custom = _extensions(channel.get("_type"), EXT_CHANNEL_TYPE)
    if channel_type != "rest-hook" or custom:
        shown = custom[0][1].get("valueCoding", {}).get("code") if custom else channel_type
        issues.append(Issue("not-supported",
                            f"Only the rest-hook channel is supported, not {shown!r}.",
                            ("Subscription.channel.type",)))
    endpoint = channel.get("endpoint")
    problem = check_endpoint(endpoint, allow_private=allow_private)
    if problem:
        issues.append(Issue("value", problem, ("Subscription.channel.endpoint",)))
    payload = channel.get("payload")
    if not isinstance(payload, str) or payload.split(";", 1)[0].strip() not in PAYLOAD_TYPES:
        issues.append(Issue("not-supported",
                            f"channel.payload must be application/fhir+json, not {payload!r}.",
                            ("Subscription.channel.payload",)))
    content_ext = _extensions(channel.get("_payload"), EXT_CONTENT)
    content: str = "id-only"
    if content_ext:
        content = str(content_ext[0][1].get("valueCode"))
        if content not in CONTENTS:
            issues.append(Issue(
                "not-supported",
                f"Payload content must be empty, id-only or full-resource, not {content!r}.",
                (f"Subscription.channel.payload.extension[{content_ext[0][0]}]",),
            ))
    headers: list[tuple[str, str]] = []
    for index, header in enumerate(channel.get("header") or []):
        where = f"Subscription.channel.header[{index}]"
        name, sep, value = str(header).partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not _HEADER_NAME.match(name) or any(c in value for c in "\r\n"):
            issues.append(Issue("value", f"A header is 'Name: value', not {header!r}.",
                                (where,)))
        elif name.lower() in RESERVED_HEADERS:
            issues.append(Issue("value", f"The header {name} is set by the server.", (where,)))
        else:
            headers.append((name, value))
    heartbeat = _one_int(channel, EXT_HEARTBEAT, "valueUnsignedInt", 1, MAX_HEARTBEAT, issues)
    timeout = _one_int(channel, EXT_TIMEOUT, "valueUnsignedInt", 1, MAX_TIMEOUT, issues)
    max_count = _one_int(channel, EXT_MAX_COUNT, "valuePositiveInt", 1, MAX_COUNT, issues)
    if issues or topic is None:
        return None, issues
    assert isinstance(endpoint, str)
    config = ChannelConfig(
        topic=topic.url,
        filters=tuple(filters),
        endpoint=endpoint,
        headers=tuple(headers),
        content=content,  # type: ignore[arg-type]
        heartbeat=heartbeat,
        timeout=float(timeout) if timeout else None,
        max_count=max_count or 1,
    )
    return config, []


def sealed_secret(resource: dict[str, Any]) -> str | None:
    channel = resource.get("channel")
    found = _extensions(channel, EXT_SECRET)
    value = found[0][1].get("valueString") if found else None
    return value if isinstance(value, str) else None


class SubscriptionCheck:
    """The write check for Subscription (see the module docstring); other types pass."""

    def __init__(self, topics: TopicRegistry, box: SecretBox, *, base_url: str,
                 allow_private: bool) -> None:
        self.topics = topics
        self.box = box
        self.base_url = base_url
        # shared with the commit hook, which resolves the endpoint's name (it may await)
        self.endpoints = EndpointGuard(allow_private)

    @property
    def allow_private(self) -> bool:
        return self.endpoints.allow_private

    def __call__(self, resource: dict[str, Any]) -> list[Issue]:
        if resource.get("resourceType") != "Subscription":
            return []
        _config, issues = read_config(resource, self.topics, base_url=self.base_url,
                                      allow_private=self.allow_private)
        issues.extend(self._seal_secret(resource))
        issues.extend(self._seal_headers(resource))
        if issues:
            return issues
        # The server owns the status: a client write (re)starts the handshake, or turns off.
        resource["status"] = "off" if resource.get("status") == "off" else "requested"
        resource.pop("error", None)
        channel = resource["channel"]
        if not _extensions(channel.get("_payload"), EXT_CONTENT):
            payload_ext = channel.setdefault("_payload", {})
            payload_ext.setdefault("extension", []).append(
                {"url": EXT_CONTENT, "valueCode": "id-only"})
        return []

    def _seal_secret(self, resource: dict[str, Any]) -> list[Issue]:
        channel = resource.get("channel")
        found = _extensions(channel, EXT_SECRET)
        if not found:
            return [Issue("required",
                          f"A signing secret is required: the extension {EXT_SECRET} on "
                          "Subscription.channel (valueString, at least "
                          f"{MIN_SECRET_LENGTH} characters).",
                          ("Subscription.channel.extension",))]
        index, ext = found[0]
        where = (f"Subscription.channel.extension[{index}]",)
        value = ext.get("valueString")
        if len(found) > 1 or not isinstance(value, str):
            return [Issue("value", "Give one signing secret as a valueString.", where)]
        if self.box.is_sealed(value):
            try:
                self.box.open(value)
            except ValueError as exc:
                return [Issue("value", f"{exc}; send the secret in clear to replace it.", where)]
            return []
        if not MIN_SECRET_LENGTH <= len(value) <= MAX_SECRET_LENGTH:
            return [Issue("value", f"The signing secret must be {MIN_SECRET_LENGTH} to "
                                   f"{MAX_SECRET_LENGTH} characters.", where)]
        ext["valueString"] = self.box.seal(value)
        return []

    def _seal_headers(self, resource: dict[str, Any]) -> list[Issue]:
        """Seal every header value for its name and the endpoint; a sealed one must open."""
        channel = resource.get("channel")
        if not isinstance(channel, dict):
            return []
        endpoint, headers = channel.get("endpoint"), channel.get("header")
        if not isinstance(endpoint, str) or not isinstance(headers, list):
            return []
        issues: list[Issue] = []
        sealed: list[Any] = []
        for index, header in enumerate(headers):
            name, sep, value = str(header).partition(":")
            name, value = name.strip(), value.strip()
            if not sep:  # read_config has said why
                sealed.append(header)
            elif not self.box.is_sealed(value):
                sealed.append(f"{name}: {self.box.seal_header(name, value, endpoint)}")
            else:
                try:
                    self.box.open_header(name, value, endpoint)
                except ValueError as exc:
                    issues.append(Issue(
                        "value", f"{exc}; send the value in clear to replace it.",
                        (f"Subscription.channel.header[{index}]",)))
                sealed.append(f"{name}: {value}")
        channel["header"] = sealed
        return issues
