"""What a notification may carry to a subscriber: screened by the gate, and logged.

Notifications carry patient data to a system that is not asking at that moment,
so the usual per-request check cannot run. The Subscription's writer's access
facts are kept with it (``subscriber.py``); every event is judged with the same
policy a read uses, for every recipient (:func:`screen`):

* at **match time**, inside the write transaction (``subscriptions/matching.py``
  through ``commit.py``): an event whose focus the subscriber may not see is no
  event for that subscription at all, so it gets no number;
* at **delivery** and in **``$events``** (:func:`screen_events`): again, with
  reach as it is then (a block or a revoked grant acts at once). An event no
  longer visible keeps its number but is sent *withheld*. A full-resource
  payload carries the resource only with ``read`` on its type, and for a patient
  or relative without its professional-only parts (``redaction.py``).

What was sent is logged (:func:`notification_records`): one ``notify`` entry per
patient whose data it carried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from samplan.security import policy, redaction
from samplan.security.audit import Agent, AuditRecord
from samplan.security.policy import Reach
from samplan.security.principal import Principal
from samplan.security.reach import ReachResolver
from samplan.store import focus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from samplan.security.gate import Gate


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one event may carry to one recipient."""

    visible: bool  # the event may name its focus (otherwise: withheld)
    full: bool  # the focus resource itself may be sent
    patients: tuple[str, ...]  # whose data it is (the access log)


async def screen(
    resolver: ReachResolver,
    recipients: Sequence[Principal | None],
    focuses: Sequence[tuple[str, Mapping[str, Any] | None]],
    *,
    on: Any = None,
) -> list[Verdict]:
    """A verdict per ``(resource type, body)`` focus, for all ``recipients`` at once.

    ``body`` is the version the event points at (for a deletion, the last version
    before it); ``None`` when it is no longer kept (only an unrestricted recipient
    sees such an event). An event must pass for every recipient (``$events``: the
    Subscription's writer *and* the caller). ``on``: a connection or write
    transaction to ask reach on.
    """
    concerned = [
        (policy.patient_ids(rtype, body) if body is not None else None) for rtype, body in focuses
    ]
    everyone = {p for ids in concerned if ids for p in ids}
    visible = [True] * len(focuses)
    full = [True] * len(focuses)
    for principal in recipients:
        if principal is None:
            continue
        reach: Reach = await resolver.among(principal, everyone, on=on)
        narrowed: Reach | None = None
        for i, (rtype, body) in enumerate(focuses):
            if not visible[i]:
                continue
            read = policy.scope_grant(principal, rtype, "read")
            search = policy.scope_grant(principal, rtype, "search")
            grant = read if read.granted else search
            if not grant.granted:
                visible[i] = full[i] = False
                continue
            judged = reach
            if grant.patient_context_only and not reach.everything:
                if narrowed is None:
                    narrowed = await resolver.among(principal, everyone, grant=grant, on=on)
                judged = narrowed
            ok = reach.everything or (
                body is not None and policy.visible(principal, judged, rtype, body))
            visible[i] = ok
            full[i] = full[i] and ok and read.granted
    return [
        Verdict(visible[i], visible[i] and full[i], tuple(sorted(concerned[i] or ())))
        for i in range(len(focuses))
    ]


@dataclass(frozen=True, slots=True)
class Screened:
    """Events screened for their recipients: which to withhold, what content may go."""

    withheld: frozenset[int]  # event numbers sent without focus or entry
    contents: dict[tuple[str, str, int], bytes | None]  # full-resource payloads allowed
    patients: dict[int, tuple[str, ...]]  # per event number sent with its focus: whose data


async def screen_events(
    gate: Gate,
    conn: AsyncConnection,
    recipients: Sequence[Principal | None],
    events: Sequence[Any],
    content: str,
) -> Screened:
    """Judge each event's focus for every recipient with the read policy (reach as it is now),
    and the full-resource payloads they may get."""
    if not events:
        return Screened(frozenset(), {}, {})
    keys = [(ev.focus_type, ev.focus_id, ev.focus_version) for ev in events]
    bodies = await focus.focus_bodies(conn, keys)
    focuses: list[tuple[str, dict[str, Any] | None]] = []
    for ev, key in zip(events, keys, strict=True):
        raw = bodies.get(key)
        body = orjson.loads(raw) if raw else None
        focuses.append((ev.focus_type, body if isinstance(body, dict) else None))
    verdicts = await screen(gate.resolver, recipients, focuses, on=conn)
    withheld = frozenset(ev.event_number for ev, v in zip(events, verdicts, strict=True)
                         if not v.visible)
    contents: dict[tuple[str, str, int], bytes | None] = {}
    if content == "full-resource":
        allowed = [k for k, v in zip(keys, verdicts, strict=True) if v.full]
        contents = await focus.focus_contents(conn, allowed) if allowed else {}
        if any(r is not None and policy.hides_professional_content(r) for r in recipients):
            contents = await _for_patients(gate, contents)
    patients = {ev.event_number: v.patients for ev, v in zip(events, verdicts, strict=True)
                if v.visible}
    return Screened(withheld, contents, patients)


async def _for_patients(
    gate: Gate, contents: dict[tuple[str, str, int], bytes | None]
) -> dict[tuple[str, str, int], bytes | None]:
    """Payloads for a patient or relative: inline labels and references to hidden resources
    removed (a focus labelled whole was never visible)."""
    referred = {key for raw in contents.values() if raw
                for key in redaction.references(orjson.loads(raw))}
    hidden = {f"{t}/{i}" for t, i in await gate.queries.labelled(
        referred, redaction.NOPATIENT_SYSTEM, redaction.NOPATIENT_CODE)}
    return {key: redaction.redact_content(raw, hidden) if raw else raw
            for key, raw in contents.items()}


def notification_records(
    recipient: Principal | None,
    subscription_id: str,
    events: Sequence[Any],
    screened: Screened,
    *,
    description: str,
    client_ip: str | None = None,
) -> list[AuditRecord]:
    """One ``notify`` entry per patient whose data the notification carried."""
    by_patient: dict[str, list[tuple[str, str]]] = {}
    for ev in events:
        for patient in screened.patients.get(ev.event_number, ()):
            by_patient.setdefault(patient, []).append((ev.focus_type, ev.focus_id))
    agent = Agent.of(recipient)
    return [
        AuditRecord(interaction="notify", agent=agent, patient_id=patient,
                    entity_type="Subscription", entity_id=subscription_id,
                    entities=tuple(dict.fromkeys(found)), query=description,
                    client_ip=client_ip)
        for patient, found in sorted(by_patient.items())
    ]


async def log_delivered(gate: Gate, conn: AsyncConnection, records: Sequence[AuditRecord]
                        ) -> None:
    """Append a delivery's entries in the transaction that marks it delivered."""
    if gate.audit and records:
        from samplan.store import audit as audit_store

        await audit_store.append(conn, [r.to_row() for r in records])
