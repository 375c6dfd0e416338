"""Who may count what: the access decision for the follow-up indicators (issue 16).

One function, :func:`count_indicators`, used by ``$evaluate-measure`` and the
staff page alike: the gate's door for counts. It takes the request's
:class:`~samplan.security.gate.Access` (who asks, from where) and counts with the
gate's :class:`~samplan.store.indicators.IndicatorQueries`, so the routes never
touch the store:

1. **Who.** Indicators count *other* patients, so patients and relatives are
   refused (403), whatever their scopes. Staff and systems count the patients
   they reach; the anonymous development principal (auth off) counts everyone.
2. **Scope.** ``read`` on ``Measure`` (``user/Measure.r``, ``system/Measure.r``,
   or a wildcard such as ``user/*.rs``): evaluating a Measure reads what the
   Measure says about the caller's patients. No search scope on the counted
   types is asked for: no resource of theirs leaves the server, only counts.
3. **Reach.** The care-team criterion of every other access
   (``ReachResolver.basis``: the caller's organisations, for a system with the
   units under them by ``partOf``, its PractitionerRoles and Practitioner, minus
   the patients blocking one of them, spärr) becomes the ``restrict``
   predicate of ``samplan.store.indicators``, compiled into the counting SQL
   as a correlated subquery, so the counts include exactly the patients a
   search would show the caller. A staff app with a ``patient/`` scope counts
   only the patient in context.
4. **Log.** One access-log entry per request (interaction ``search``, the
   Measure(s) as entities, the query as asked, no patient: no patient's data is
   disclosed, only counts), committed before the answer is sent; a refusal is
   logged with outcome 4.

Staff answers to the seven questions are about units, not patients: they are
counted for every caller who may count (narrowed by ``subject`` only).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

from sqlalchemy import ColumnElement, false

from samplan.fhir.errors import FhirError, Forbidden, Unprocessable
from samplan.followup import measures
from samplan.followup.questionnaires import SevenQuestions
from samplan.followup.tally import Tally, Window
from samplan.security import policy
from samplan.security.audit import MINOR_FAILURE, SUCCESS, Agent, AuditRecord
from samplan.security.gate import Access
from samplan.security.principal import Principal
from samplan.store.access import care_team_reaches
from samplan.store.indicators import IndicatorQueries, Restrict, Subject

__all__ = ["IndicatorRequest", "Tally", "Window", "count_indicators"]

#: The scope an indicator request needs: ``read`` on this type.
MEASURE_TYPE: Final = "Measure"
#: Kinds of caller refused outright: the counts are about other patients.
REFUSED_KINDS: Final = frozenset({"patient", "relative"})


@dataclass(frozen=True, slots=True)
class IndicatorRequest:
    """What is asked: measures (ids of ``followup.codes.MEASURE_IDS``), periods, and how.

    ``subject``: an Organization id, to count only that unit's (or provider's) patients.
    ``by_unit``: the windows (indexes into ``windows``) for which, besides the totals, one
    tally per care unit is wanted (it costs a row per unit). ``query``: the request as
    the access log should show it (``Measure/rub5-med-sip/$evaluate-measure?...``).
    """

    measures: tuple[str, ...]
    windows: tuple[Window, ...]
    subject: str | None = None
    by_unit: tuple[int, ...] = ()
    query: str = ""


async def count_indicators(
    access: Access, request: IndicatorRequest, *, seven: SevenQuestions, now: int,
) -> dict[str, list[Tally]]:
    """Count ``request``'s measures over the patients ``access``'s principal reaches, and
    log it.

    Gives each measure's tallies: one per period and group for all patients counted
    (``unit`` None), and one per period of ``by_unit``, group and care unit besides.

    Raises 403 for patients, relatives and callers without ``read`` on Measure, and
    422 (at ``subject``) for a subject Organization that does not exist.
    """
    queries = access.gate.indicators
    try:
        restrict = await _restriction(access)
        subject = await _subject(queries, request.subject)
    except FhirError as error:
        await _log(access, request, error)
        raise
    found: dict[str, list[Tally]] = {}
    for measure_id in request.measures:
        definition = measures.definition(measure_id)
        if definition is None:
            raise ValueError(f"no such measure: {measure_id}")  # the caller checks the id
        questionnaire = definition.questions_of(seven)
        links = questionnaire.link_ids if questionnaire is not None else ()
        tallies = await queries.tally(measure_id, request.windows, restrict=restrict, now=now,
                                      subject=subject, questions=links)
        if request.by_unit:
            chosen = [request.windows[i] for i in request.by_unit]
            per_unit = await queries.tally(measure_id, chosen, restrict=restrict, now=now,
                                           subject=subject, questions=links, by_unit=True)
            tallies += [replace(t, window=request.by_unit[t.window]) for t in per_unit]
        found[measure_id] = tallies
    await _log(access, request)
    return found


async def _restriction(access: Access) -> Restrict | None:
    """The caller's reach as a predicate over a patient-id column (None: everyone)."""
    principal = access.principal
    if principal is None:  # the service's own access (bench, tests): every patient
        return None
    if principal.kind in REFUSED_KINDS:
        raise Forbidden("Indicators count other patients' data: they are for staff and "
                        f"systems, not for a {principal.kind}.")
    grant = policy.check_scope(principal, MEASURE_TYPE, "read")
    basis = await access.gate.resolver.basis(principal, grant=grant)
    if basis.everything:  # the anonymous development principal (auth off)
        return None
    if not basis.by_care_team:  # a clinician's patient/ scope: the patient in context
        own = sorted(basis.patients)
        return lambda patient: patient.in_(own) if own else false()

    def reached(patient: ColumnElement[Any]) -> ColumnElement[bool]:
        found = care_team_reaches(patient, organisations=basis.organisations, roles=basis.roles,
                                  practitioners=basis.practitioners, blocked=basis.blocked)
        return found if found is not None else false()  # naming nobody reaches nobody

    return reached


async def _subject(queries: IndicatorQueries, organisation_id: str | None) -> Subject | None:
    if organisation_id is None:
        return None
    found = await queries.subject(organisation_id)
    if found is None:
        raise Unprocessable(f"subject Organization/{organisation_id} does not exist.",
                            ["subject"], code="not-found")
    return found


async def _log(access: Access, request: IndicatorRequest,
               error: FhirError | None = None) -> None:
    """One entry per request, committed before the counts are answered."""
    if access.principal is not None:
        await access.gate.log([_record(access.principal, request, access.client_ip, error)])


def _record(principal: Principal, request: IndicatorRequest, client_ip: str | None,
            error: FhirError | None = None) -> AuditRecord:
    entities = tuple((MEASURE_TYPE, m) for m in request.measures)
    single = request.measures[0] if len(request.measures) == 1 else None
    return AuditRecord(
        interaction="search", agent=Agent.of(principal),
        outcome=MINOR_FAILURE if error else SUCCESS,
        outcome_text=f"{error.status}: {error.diagnostics}" if error else None,
        entity_type=MEASURE_TYPE, entity_id=single, entities=entities if single is None else (),
        query=request.query or None, client_ip=client_ip,
    )
