"""SubscriptionTopics: what can be subscribed to, read from ``fhir_profiles/subscription-topics/``.

R4 has no SubscriptionTopic resource, so the Subscriptions R5 Backport IG
serves topics as ``Basic`` resources (``code`` = fhir-types#SubscriptionTopic)
carrying the R5 elements as cross-version extensions
(``http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.*``).
The JSON files are the single source: the server stores them at start (read
and searched like any resource), advertises their canonical URLs in the
CapabilityStatement, and reads from them which resource types and interactions
trigger events and which filter parameters a Subscription may use.

How a change *belongs* to a topic (for ``agreement-changed``: the resource is
the agreement's CarePlan or named by it) is code, in :mod:`.matching`, keyed by
the topic's canonical URL; a topic file without such code is refused at start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

XVER = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
TOPIC_CODE = {"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}
AGREEMENT_CHANGED = "https://samplan.se/fhir/SubscriptionTopic/agreement-changed"

# FHIR interaction names (as in SubscriptionTopic.resourceTrigger.supportedInteraction)
Interaction = str
INTERACTIONS = ("create", "update", "delete")


class TopicError(ValueError):
    """A topic file that cannot be served (a start-up error, not a client error)."""


@dataclass(frozen=True, slots=True)
class FilterDefinition:
    """One ``canFilterBy``: a filter parameter a Subscription may use, and on which type."""

    name: str
    resource_type: str
    description: str


@dataclass(frozen=True, slots=True)
class Topic:
    url: str
    resource_id: str
    title: str
    triggers: dict[str, frozenset[Interaction]]
    filters: dict[str, FilterDefinition]
    resource: dict[str, Any] = field(repr=False, compare=False)

    def triggers_on(self, resource_type: str, interaction: Interaction) -> bool:
        return interaction in self.triggers.get(resource_type, frozenset())

    @property
    def filter_types(self) -> frozenset[str]:
        return frozenset(f.resource_type for f in self.filters.values())


def _ext(element: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The cross-version extensions ``name`` on a topic."""
    return _sub(element, XVER + name)


def _sub(element: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in element.get("extension") or []
            if isinstance(e, dict) and e.get("url") == url]


def _value(ext: dict[str, Any]) -> Any:
    for key, value in ext.items():
        if key.startswith("value"):
            return value
    return None


def _type_name(uri: str) -> str:
    """``http://hl7.org/fhir/StructureDefinition/CarePlan`` or ``CarePlan`` -> ``CarePlan``."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def parse_topic(resource: dict[str, Any]) -> Topic:
    """Read one Basic-encoded SubscriptionTopic; TopicError when it is not one."""
    if resource.get("resourceType") != "Basic" or not isinstance(resource.get("id"), str):
        raise TopicError("a topic is a Basic resource with an id")
    codings = (resource.get("code") or {}).get("coding") or []
    if not any(c.get("system") == TOPIC_CODE["system"] and c.get("code") == TOPIC_CODE["code"]
               for c in codings):
        raise TopicError(f"Basic/{resource['id']} is not coded as a SubscriptionTopic")
    urls = [_value(e) for e in _ext(resource, "url")]
    if len(urls) != 1 or not isinstance(urls[0], str):
        raise TopicError(f"Basic/{resource['id']} needs exactly one SubscriptionTopic.url")
    titles = [_value(e) for e in _ext(resource, "title")]
    triggers: dict[str, set[Interaction]] = {}
    for trigger in _ext(resource, "resourceTrigger"):
        types = [_type_name(str(_value(e))) for e in _sub(trigger, "resource")]
        interactions = {str(_value(e)) for e in _sub(trigger, "supportedInteraction")}
        if len(types) != 1 or not interactions <= set(INTERACTIONS):
            raise TopicError(f"{urls[0]}: a resourceTrigger needs one resource and "
                             "create/update/delete interactions")
        triggers.setdefault(types[0], set()).update(interactions or INTERACTIONS)
    filters: dict[str, FilterDefinition] = {}
    for can in _ext(resource, "canFilterBy"):
        names = [str(_value(e)) for e in _sub(can, "filterParameter")]
        types = [_type_name(str(_value(e))) for e in _sub(can, "resource")]
        descriptions = [str(_value(e)) for e in _sub(can, "description")]
        if len(names) != 1 or len(types) != 1:
            raise TopicError(f"{urls[0]}: a canFilterBy needs one resource and one filterParameter")
        filters[names[0]] = FilterDefinition(names[0], types[0],
                                             descriptions[0] if descriptions else "")
    if not triggers:
        raise TopicError(f"{urls[0]}: a topic needs at least one resourceTrigger")
    return Topic(
        url=urls[0],
        resource_id=resource["id"],
        title=str(titles[0]) if titles else resource["id"],
        triggers={k: frozenset(v) for k, v in triggers.items()},
        filters=filters,
        resource=resource,
    )


class TopicRegistry:
    """The topics this server serves, by canonical URL."""

    def __init__(self, topics: Iterable[Topic]) -> None:
        self.by_url: dict[str, Topic] = {t.url: t for t in topics}

    @classmethod
    def load(cls, directory: Path) -> TopicRegistry:
        topics = []
        for file in sorted(directory.glob("*.json")):
            try:
                topics.append(parse_topic(orjson.loads(file.read_bytes())))
            except (orjson.JSONDecodeError, TopicError) as exc:
                raise TopicError(f"{file}: {exc}") from exc
        return cls(topics)

    def get(self, url: str) -> Topic | None:
        # A canonical may carry a version (``url|0.1.0``); one version is served.
        return self.by_url.get(url.split("|", 1)[0])

    def __iter__(self) -> Any:
        return iter(self.by_url.values())

    @property
    def trigger_types(self) -> frozenset[str]:
        return frozenset(t for topic in self.by_url.values() for t in topic.triggers)

    def resources(self) -> list[dict[str, Any]]:
        return [t.resource for t in self.by_url.values()]
