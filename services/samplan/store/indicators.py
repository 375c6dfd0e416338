"""The indicators' SQL: the follow-up Measures counted over the search index tables.

Every count is one statement over ``idx_token``, ``idx_reference`` and
``idx_date`` (the current, non-deleted version of each resource), grouped by
measurement period (and care unit): nothing is loaded per patient, so 100,000
patients cost index lookups, not JSON. The criteria are the ones
``samplan.followup.measures`` words and docs/indicators.md explains; the ids
and codes come from ``samplan.followup.codes``.

Who is counted is the caller's business: every function takes ``restrict``, a
predicate over a patient-id column (``None`` = everyone). The security layer
(``samplan.security.indicators``) passes the caller's reach, today
``samplan.store.access.care_team_reaches`` with the caller's organisations, so
the counts include only patients the caller reaches. Any predicate of that
shape plugs in: it is applied to each candidate patient of a population,
correlated, before anything is counted.

The shape of every measure: a set of rows, one per (period, patient) (for the
seven questions, one per (period, response, question)), each with two 0/1
columns, ``den`` and ``num``; the initial population is the number of rows,
the denominator and numerator their sums. By care unit, each row is repeated
for every Organization a (not ended) CareTeam of the patient names (as
participant, as managing organisation, or through a PractitionerRole), so a
patient shared by two units counts in both.

Two plans for the same criteria. The planner's row estimates over the index
tables are far too low (it takes a type, a parameter, a code and a system for
independent), so it probes row by row, and a join between two derived tables
it takes for one row each becomes a loop over both. On SQLite (small
deployments) each criterion is therefore asked as index lookups from the row
at hand (``sets=False``: correlated EXISTS, linear at any size). On PostgreSQL
the criteria are sets joined to the rows and the statement runs with nested
loops off (:data:`PG_SET_BASED`): hash joins over whole index ranges, about
four times faster at 100,000 patients (bench/README.md, ``indicators``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    Integer,
    Select,
    String,
    Subquery,
    and_,
    case,
    false,
    func,
    literal,
    or_,
    select,
    text,
    true,
    union,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from samplan.fhir.dates import MAX_US, MIN_US
from samplan.followup import codes
from samplan.followup.tally import Tally, Window
from samplan.store.access import ENDED_CARE_TEAM_STATUSES, care_team_reaches
from samplan.store.tables import idx_date, idx_reference, idx_token, resources

Restrict = Callable[[ColumnElement[Any]], ColumnElement[bool] | None]
"""A predicate over a patient-id column: the patients that may be counted (None: all)."""

_OBS: Final = "Observation"
_PLAN: Final = "CarePlan"
_TEAM: Final = "CareTeam"
_QR: Final = "QuestionnaireResponse"
_PARTS_DEPTH: Final = 3
PG_SET_BASED: Final = ("SET LOCAL enable_nestloop = off", "SET LOCAL work_mem = '64MB'",
                       "SET LOCAL jit = off")
"""PostgreSQL, for the patients' measures: hash joins over whole index ranges. Its row
estimates over the index tables are far too low (it takes type, parameter, code and system
for independent), so left alone it probes row by row (or worse, loops over one derived
table for each row of another); a county's 100,000 patients are read faster in bulk.

JIT off: a plan that needs a nested loop anyway (the month windows' range join) carries
the planner's penalty for a disabled node, an estimated cost far above ``jit_above_cost``,
so every statement was compiled with inlining and optimisation: about 2.5 s of LLVM
for a statement that runs in 10 ms, at any size (a unit's CSV export took 15 s over
a few dozen patients)."""
"""How many levels of ``Organization.partOf`` a subject's units are looked for under."""


@dataclass(frozen=True, slots=True)
class Subject:
    """The organisations a ``subject=Organization/{id}`` stands for: it and its parts, and
    their PractitionerRoles (a CareTeam may name a unit through one)."""

    organisations: frozenset[str]
    roles: frozenset[str]

    def reaches(self, patient: ColumnElement[Any]) -> ColumnElement[bool]:
        found = care_team_reaches(patient, organisations=self.organisations, roles=self.roles,
                                  name="subject")
        return found if found is not None else false()


class IndicatorQueries:
    """Counts per measure, period, group and unit; one per application (stateless)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def tally(
        self,
        measure: str,
        windows: Sequence[Window],
        *,
        restrict: Restrict | None,
        now: int,
        subject: Subject | None = None,
        by_unit: bool = False,
        questions: Sequence[str] = (),
    ) -> list[Tally]:
        """Count ``measure`` (an id of ``codes.MEASURE_IDS``) in each window.

        ``restrict``: the patients that may be counted. ``subject``: only patients
        of these care units (by CareTeam), and staff answers about them. ``by_unit``:
        one tally per unit instead of one for all. ``questions``: the linkIds, in
        order, of a questionnaire measure's groups. ``now``: a booked time must
        lie after the end of its period, or after now when the period is not over.
        """
        if not windows:
            return []
        postgres = self.engine.dialect.name == "postgresql"
        stmt = tally_statement(measure, windows, restrict=restrict, now=now, subject=subject,
                               by_unit=by_unit, questions=questions, sets=postgres)
        async with self.engine.connect() as conn:
            if postgres and measure not in _ANSWER_MEASURES:
                for setting in PG_SET_BASED:  # for this statement's transaction only
                    await conn.execute(text(setting))
            found = (await conn.execute(stmt)).all()
        return [Tally(int(r.n), str(r.grp), r.unit if by_unit else None, int(r.initial),
                      int(r.den or 0), int(r.num or 0)) for r in found]

    async def subject(self, organisation_id: str) -> Subject | None:
        """The units a subject Organization stands for; None when there is no such one."""
        c = resources.c
        exists = select(c.resource_id).where(
            c.resource_type == "Organization", c.resource_id == organisation_id,
            c.deleted == false())
        r = idx_reference.c
        async with self.engine.connect() as conn:
            if (await conn.execute(exists)).first() is None:
                return None
            found, level = {organisation_id}, {organisation_id}
            for _ in range(_PARTS_DEPTH):
                parts = select(r.resource_id).where(
                    r.resource_type == "Organization", r.param == "partof",
                    r.target_type == "Organization", r.target_id.in_(sorted(level)))
                level = {row[0] for row in await conn.execute(parts)} - found
                if not level:
                    break
                found |= level
            roles = select(r.resource_id).where(
                r.resource_type == "PractitionerRole", r.param == "organization",
                r.target_type == "Organization", r.target_id.in_(sorted(found)))
            role_ids = frozenset(row[0] for row in await conn.execute(roles))
        return Subject(frozenset(found), role_ids)


# -- the measurement periods ---------------------------------------------------------------


def tally_statement(
    measure: str,
    windows: Sequence[Window],
    *,
    restrict: Restrict | None,
    now: int,
    subject: Subject | None = None,
    by_unit: bool = False,
    questions: Sequence[str] = (),
    sets: bool,
) -> Select[Any]:
    """The one statement that counts ``measure`` (:meth:`IndicatorQueries.tally`); ``sets``:
    the criteria as joined sets (PostgreSQL) or as lookups from the row (SQLite)."""
    win = _windows(windows, now)
    if measure in _RUB_MEASURES:
        rows = _rub_rows(measure, win, _patient_filter(restrict, subject), sets=sets)
    elif measure in _AGREEMENT_MEASURES:
        rows = _agreement_rows(measure, win, _patient_filter(restrict, subject), sets=sets)
    elif measure == codes.SJU_FRAGOR_PATIENT:
        rows = _answer_rows(codes.PATIENT_QUESTIONNAIRE, "Patient", win, questions,
                            _patient_filter(restrict, subject))
    elif measure == codes.SJU_FRAGOR_PERSONAL:
        rows = _answer_rows(codes.STAFF_QUESTIONNAIRE, "Organization", win, questions,
                            _unit_filter(subject))
    else:
        raise ValueError(f"no such measure: {measure}")
    per_unit = measure == codes.SJU_FRAGOR_PERSONAL
    return _count(rows.subquery("population"), by_unit=by_unit, answers_by_unit=per_unit)


def _windows(windows: Sequence[Window], now: int) -> Subquery:
    """The periods as a derived table ``(n, low, high, ahead)``; ``ahead``: the moment a
    booked time must lie after (the period's end, or now while the period runs)."""
    rows = [
        select(literal(n, Integer).label("n"), literal(w.low, BigInteger).label("low"),
               literal(w.high, BigInteger).label("high"),
               literal(min(w.high, now), BigInteger).label("ahead"))
        for n, w in enumerate(windows)
    ]
    return (union_all(*rows) if len(rows) > 1 else rows[0]).subquery("win")


# -- who may be counted ---------------------------------------------------------------------

PatientFilter = Callable[[ColumnElement[Any]], list[ColumnElement[bool]]]


def _patient_filter(restrict: Restrict | None, subject: Subject | None) -> PatientFilter:
    def conditions(patient: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if restrict is not None:
            limit = restrict(patient)
            if limit is not None:
                found.append(limit)
        if subject is not None:
            found.append(subject.reaches(patient))
        return found

    return conditions


def _unit_filter(subject: Subject | None) -> PatientFilter:
    """Staff answers are about a unit, not a patient: only ``subject`` narrows them."""
    def conditions(unit: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        return [] if subject is None else [unit.in_(sorted(subject.organisations))]

    return conditions


# -- the criteria, each a set joined by patient (hash joins over index rows, not probes) ----


def _plans(codings: Sequence[tuple[str, str]], allowed: PatientFilter | None = None) -> Subquery:
    """``(plan, patient, low, high)``: CarePlans with one of ``codings`` as category and a
    counted status, with their period (none: from the first to the last moment)."""
    cat = idx_token.alias("plan_category")
    status = idx_token.alias("plan_status")
    who = idx_reference.alias("plan_patient")
    period = idx_date.alias("plan_period")
    return (
        select(cat.c.resource_id.label("plan"), who.c.target_id.label("patient"),
               func.coalesce(period.c.low, literal(MIN_US, BigInteger)).label("low"),
               func.coalesce(period.c.high, literal(MAX_US, BigInteger)).label("high"))
        .select_from(cat)
        .join(status, and_(status.c.resource_type == _PLAN,
                           status.c.resource_id == cat.c.resource_id, status.c.param == "status",
                           status.c.code.in_(codes.COUNTED_PLAN_STATUSES)))
        .join(who, and_(who.c.resource_type == _PLAN, who.c.resource_id == cat.c.resource_id,
                        who.c.param == "patient", who.c.target_type == "Patient"))
        .outerjoin(period, and_(period.c.resource_type == _PLAN,
                                period.c.resource_id == cat.c.resource_id,
                                period.c.param == "date"))
        .where(cat.c.resource_type == _PLAN, cat.c.param == "category",
               or_(*(and_(cat.c.system == sys, cat.c.code == code) for sys, code in codings)),
               *(allowed(who.c.target_id) if allowed else ()))
        .distinct()
    ).subquery()


def _in_force(plans: Subquery, win: Subquery) -> Select[Any]:
    """``(n, ahead, patient, plan)``: each plan in each window its period overlaps."""
    return select(win.c.n, win.c.ahead, plans.c.patient, plans.c.plan).select_from(plans).join(
        win, and_(plans.c.low <= win.c.high, plans.c.high >= win.c.low))


def _plans_with_role(role: str, prefix: str) -> tuple[Select[Any], FromClause]:
    """``(plan)`` of the CarePlan -> CareTeam links whose team (not ended) has a participant
    of this KV role, and the link table's alias (to correlate on its ``resource_id``).
    ``prefix`` names the aliases: both forms may sit in one statement."""
    team = idx_reference.alias(f"{prefix}_team")
    kind = idx_token.alias(f"{prefix}_kind")
    ended = idx_token.alias(f"{prefix}_team_ended")
    over = select(ended.c.resource_id).where(
        ended.c.resource_type == _TEAM, ended.c.resource_id == team.c.target_id,
        ended.c.param == "status", ended.c.code.in_(ENDED_CARE_TEAM_STATUSES)).exists()
    stmt = (
        select(team.c.resource_id.label("plan"))
        .join(kind, and_(kind.c.resource_type == _TEAM, kind.c.resource_id == team.c.target_id,
                         kind.c.param == "participant-role", kind.c.system == codes.KV_SYSTEM,
                         kind.c.code == role))
        .where(team.c.resource_type == _PLAN, team.c.param == "care-team",
               team.c.target_type == _TEAM, ~over)
    )
    return stmt, team


def _with_role(role: str) -> Subquery:
    """``(plan)``: CarePlans whose CareTeam (not ended) has a participant of this KV role."""
    stmt, _ = _plans_with_role(role, "role")
    return stmt.distinct().subquery()


def _booked() -> Subquery:
    """``(patient, start)``: the booked Appointments each patient takes part in."""
    who = idx_reference.alias("booked_patient")
    status = idx_token.alias("booked_status")
    start = idx_date.alias("booked_start")
    return (
        select(who.c.target_id.label("patient"), start.c.low.label("start"))
        .join(status, and_(status.c.resource_type == "Appointment",
                           status.c.resource_id == who.c.resource_id, status.c.param == "status",
                           status.c.code.in_(codes.COUNTED_APPOINTMENT_STATUSES)))
        .join(start, and_(start.c.resource_type == "Appointment",
                          start.c.resource_id == who.c.resource_id, start.c.param == "date"))
        .where(who.c.resource_type == "Appointment", who.c.param == "patient",
               who.c.target_type == "Patient")
    ).subquery()


def _patients_in_force(plans: Subquery, win: Subquery, role: str | None = None) -> Subquery:
    """``(n, patient)``: patients with such a plan in force in window ``n`` (with ``role``,
    one whose CareTeam has that role)."""
    force = _in_force(plans, win).subquery()
    stmt = select(force.c.n, force.c.patient)
    if role is not None:
        roles = _with_role(role)
        stmt = stmt.join(roles, roles.c.plan == force.c.plan)
    return stmt.distinct().subquery()


def _has_role(plan: ColumnElement[Any], role: str) -> ColumnElement[bool]:
    """The CarePlan in ``plan`` has a CareTeam (not ended) with a participant of this KV
    role: a few index lookups for the plan at hand."""
    stmt, team = _plans_with_role(role, "plan")
    return stmt.where(team.c.resource_id == plan).exists()


def _booked_after(patient: ColumnElement[Any], ahead: ColumnElement[Any]) -> ColumnElement[bool]:
    """The patient takes part in a booked Appointment starting after ``ahead``."""
    who = idx_reference.alias("visit_patient")
    status = idx_token.alias("visit_status")
    start = idx_date.alias("visit_start")
    return (
        select(who.c.resource_id)
        .join(status, and_(status.c.resource_type == "Appointment",
                           status.c.resource_id == who.c.resource_id, status.c.param == "status",
                           status.c.code.in_(codes.COUNTED_APPOINTMENT_STATUSES)))
        .join(start, and_(start.c.resource_type == "Appointment",
                          start.c.resource_id == who.c.resource_id, start.c.param == "date",
                          start.c.low > ahead))
        .where(who.c.resource_type == "Appointment", who.c.param == "patient",
               who.c.target_type == "Patient", who.c.target_id == patient)
    ).exists()


def _plan_in_period(
    patient: ColumnElement[Any], low: ColumnElement[Any], high: ColumnElement[Any],
    codings: Sequence[tuple[str, str]], *, role: str | None = None,
) -> ColumnElement[bool]:
    """The patient has a CarePlan with one of ``codings``, a counted status and a period
    overlapping ``low``..``high`` (or none); with ``role``, one whose CareTeam has that role."""
    who = idx_reference.alias("plan_patient")
    cat = idx_token.alias("plan_category")
    status = idx_token.alias("plan_status")
    period = idx_date.alias("plan_period")
    # a CarePlan has at most one period; the window's bounds stay in this SELECT, so that
    # they correlate to the row asking
    stmt = (
        select(who.c.resource_id)
        .join(cat, and_(cat.c.resource_type == _PLAN, cat.c.resource_id == who.c.resource_id,
                        cat.c.param == "category",
                        or_(*(and_(cat.c.system == sys, cat.c.code == code)
                              for sys, code in codings))))
        .join(status, and_(status.c.resource_type == _PLAN,
                           status.c.resource_id == who.c.resource_id, status.c.param == "status",
                           status.c.code.in_(codes.COUNTED_PLAN_STATUSES)))
        .outerjoin(period, and_(period.c.resource_type == _PLAN,
                                period.c.resource_id == who.c.resource_id,
                                period.c.param == "date"))
        .where(who.c.resource_type == _PLAN, who.c.param == "patient",
               who.c.target_type == "Patient", who.c.target_id == patient,
               or_(period.c.resource_id.is_(None),
                   and_(period.c.low <= high, period.c.high >= low)))
    )
    if role is not None:
        stmt = stmt.where(_has_role(who.c.resource_id, role))
    return stmt.exists()


# -- the populations ------------------------------------------------------------------------

_RUB_MEASURES: Final = {
    codes.RUB5_UTAN_FAST_LAKARKONTAKT: ("5",),
    codes.RUB5_MED_SIP: ("5",),
    codes.RUB45_MED_OVERENSKOMMELSE: ("4", "5"),
}
_AGREEMENT_MEASURES: Final = (
    codes.OVERENSKOMMELSE_MED_NASTA_TID, codes.OVERENSKOMMELSE_MED_FAST_VARDKONTAKT,
)
_ANSWER_MEASURES: Final = (codes.SJU_FRAGOR_PATIENT, codes.SJU_FRAGOR_PERSONAL)


def _rub_rows(measure: str, win: Subquery, allowed: PatientFilter, *,
              sets: bool = False) -> Select[Any]:
    """One row per (period, patient with a RUB level in it): the latest level counts.

    ``sets``: the criteria as sets joined to the rows (for hash joins, PostgreSQL),
    else as index lookups from each row (SQLite)."""
    code = idx_token.alias("rub_code")
    when = idx_date.alias("rub_when")
    who = idx_reference.alias("rub_patient")
    value = idx_token.alias("rub_value")
    status = idx_token.alias("rub_status")
    latest = func.row_number().over(
        partition_by=(win.c.n, who.c.target_id),
        order_by=(when.c.low.desc(), code.c.resource_id.desc()))
    ranked = (
        select(win.c.n, who.c.target_id.label("patient"), value.c.code.label("level"),
               latest.label("latest"))
        .select_from(code)
        .join(when, and_(when.c.resource_type == _OBS, when.c.resource_id == code.c.resource_id,
                         when.c.param == "date"))
        .join(win, and_(when.c.low >= win.c.low, when.c.low <= win.c.high))
        .join(who, and_(who.c.resource_type == _OBS, who.c.resource_id == code.c.resource_id,
                        who.c.param == "patient", who.c.target_type == "Patient"))
        .join(value, and_(value.c.resource_type == _OBS,
                          value.c.resource_id == code.c.resource_id,
                          value.c.param == "value-integer"))
        .join(status, and_(status.c.resource_type == _OBS,
                           status.c.resource_id == code.c.resource_id, status.c.param == "status",
                           status.c.code.in_(codes.COUNTED_OBSERVATION_STATUSES)))
        .where(code.c.resource_type == _OBS, code.c.param == "code",
               code.c.system == codes.RUB_SYSTEM, code.c.code == codes.RUB,
               *allowed(who.c.target_id))
    ).subquery("rub_ranked")
    rub = select(ranked).where(ranked.c.latest == 1).subquery("rub")
    if sets:
        return _rub_flags_joined(measure, rub, win)
    base = (select(rub.c.n, rub.c.patient, rub.c.level, win.c.low, win.c.high)
            .join(win, win.c.n == rub.c.n)).subquery("rub_in_period")
    bounds = (base.c.patient, base.c.low, base.c.high)
    if measure == codes.RUB5_UTAN_FAST_LAKARKONTAKT:
        met = ~_plan_in_period(*bounds, (codes.AGREEMENT,), role=codes.FAST_LAKARKONTAKT)
    elif measure == codes.RUB5_MED_SIP:
        met = _plan_in_period(*bounds, codes.SIP_CODINGS)
    else:
        met = _plan_in_period(*bounds, (codes.AGREEMENT,))
    in_denominator = base.c.level.in_(_RUB_MEASURES[measure])
    return select(
        base.c.n, literal("", String).label("grp"), base.c.patient.label("who"),
        base.c.patient.label("key"), case((in_denominator, 1), else_=0).label("den"),
        case((~in_denominator, 0), (met, 1), else_=0).label("num"),
    )


def _rub_flags_joined(measure: str, rub: Subquery, win: Subquery) -> Select[Any]:
    if measure == codes.RUB5_UTAN_FAST_LAKARKONTAKT:
        found = _patients_in_force(_plans((codes.AGREEMENT,)), win, codes.FAST_LAKARKONTAKT)
    elif measure == codes.RUB5_MED_SIP:
        found = _patients_in_force(_plans(codes.SIP_CODINGS), win)
    else:
        found = _patients_in_force(_plans((codes.AGREEMENT,)), win)
    in_denominator = rub.c.level.in_(_RUB_MEASURES[measure])
    has = found.c.patient.is_not(None)
    met = ~has if measure == codes.RUB5_UTAN_FAST_LAKARKONTAKT else has
    return (
        select(rub.c.n, literal("", String).label("grp"), rub.c.patient.label("who"),
               rub.c.patient.label("key"), case((in_denominator, 1), else_=0).label("den"),
               case((and_(in_denominator, met), 1), else_=0).label("num"))
        .select_from(rub)
        .outerjoin(found, and_(found.c.n == rub.c.n, found.c.patient == rub.c.patient))
    )


def _agreement_rows(measure: str, win: Subquery, allowed: PatientFilter, *,
                    sets: bool = False) -> Select[Any]:
    """One row per (period, patient with an agreement in force in it)."""
    force = _in_force(_plans((codes.AGREEMENT,), allowed), win).subquery("in_force")
    if sets:
        if measure == codes.OVERENSKOMMELSE_MED_NASTA_TID:
            booked = _booked()
            flag = booked.c.patient.is_not(None)
            joined = force.outerjoin(booked, and_(booked.c.patient == force.c.patient,
                                                  booked.c.start > force.c.ahead))
        else:
            roles = _with_role(codes.FAST_VARDKONTAKT)
            flag = roles.c.plan.is_not(None)
            joined = force.outerjoin(roles, roles.c.plan == force.c.plan)
        return (
            select(force.c.n, literal("", String).label("grp"), force.c.patient.label("who"),
                   force.c.patient.label("key"), literal(1, Integer).label("den"),
                   func.max(case((flag, 1), else_=0)).label("num"))
            .select_from(joined).group_by(force.c.n, force.c.patient)
        )
    if measure == codes.OVERENSKOMMELSE_MED_NASTA_TID:
        met = _booked_after(force.c.patient, force.c.ahead)
    else:
        met = _has_role(force.c.plan, codes.FAST_VARDKONTAKT)
    return (
        select(force.c.n, literal("", String).label("grp"), force.c.patient.label("who"),
               force.c.patient.label("key"), literal(1, Integer).label("den"),
               func.max(case((met, 1), else_=0)).label("num"))
        .group_by(force.c.n, force.c.patient)
    )


def _answer_rows(
    questionnaire: str, subject_type: str, win: Subquery, questions: Sequence[str],
    allowed: PatientFilter,
) -> Select[Any]:
    """One row per (period, response authored in it, question): answered, and said yes."""
    if not questions:
        raise ValueError("a questionnaire measure needs its questions' linkIds")
    q = idx_token.alias("response_questionnaire")
    status = idx_token.alias("response_status")
    authored = idx_date.alias("response_authored")
    who = idx_reference.alias("response_subject")
    responses = (
        select(win.c.n, q.c.resource_id.label("response"), who.c.target_id.label("who"))
        .select_from(q)
        .join(status, and_(status.c.resource_type == _QR, status.c.resource_id == q.c.resource_id,
                           status.c.param == "status",
                           status.c.code.in_(codes.COUNTED_RESPONSE_STATUSES)))
        .join(authored, and_(authored.c.resource_type == _QR,
                             authored.c.resource_id == q.c.resource_id,
                             authored.c.param == "authored"))
        .join(win, and_(authored.c.low >= win.c.low, authored.c.low <= win.c.high))
        .join(who, and_(who.c.resource_type == _QR, who.c.resource_id == q.c.resource_id,
                        who.c.param == "subject", who.c.target_type == subject_type))
        .where(q.c.resource_type == _QR, q.c.param == "questionnaire",
               or_(q.c.code == questionnaire, q.c.code.like(f"{questionnaire}|%")),
               *allowed(who.c.target_id))
    ).subquery("responses")
    items = [select(literal(link, String).label("item")) for link in questions]
    item = (union_all(*items) if len(items) > 1 else items[0]).subquery("questions")
    answer = idx_token.alias("answer")
    answers = select(answer.c.resource_id, answer.c.system, answer.c.code).where(
        answer.c.resource_type == _QR, answer.c.param == codes.ANSWER_PARAM).subquery("answers")
    return (
        select(responses.c.n, item.c.item.label("grp"), responses.c.who,
               responses.c.response.label("key"),
               func.max(case((answers.c.resource_id.is_not(None), 1), else_=0)).label("den"),
               func.max(case((answers.c.code == "true", 1), else_=0)).label("num"))
        .select_from(responses.join(item, true()).outerjoin(answers, and_(
            answers.c.resource_id == responses.c.response, answers.c.system == item.c.item)))
        .group_by(responses.c.n, responses.c.response, item.c.item, responses.c.who)
    )


# -- counting ------------------------------------------------------------------------------


def _with_units(rows: Subquery) -> Subquery:
    """The rows once per unit of their patient: every Organization a not-ended CareTeam of
    the patient names, directly or through a PractitionerRole (index lookups from the
    patient; ``UNION`` so that a unit named both ways counts the row once)."""
    team = idx_reference.alias("unit_team")
    member = idx_reference.alias("unit_member")
    role = idx_reference.alias("unit_role_org")
    ended = idx_token.alias("unit_team_ended")
    alive = ~select(ended.c.resource_id).where(
        ended.c.resource_type == _TEAM, ended.c.resource_id == team.c.resource_id,
        ended.c.param == "status", ended.c.code.in_(ENDED_CARE_TEAM_STATUSES)).exists()
    of_patient = and_(team.c.resource_type == _TEAM, team.c.param == "patient",
                      team.c.target_type == "Patient", team.c.target_id == rows.c.who)
    columns = (rows.c.n, rows.c.grp, rows.c.key, rows.c.den, rows.c.num)
    direct = (
        select(*columns, member.c.target_id.label("unit")).select_from(rows)
        .join(team, of_patient)
        .join(member, and_(member.c.resource_type == _TEAM,
                           member.c.resource_id == team.c.resource_id,
                           member.c.param.in_(("participant", "organization")),
                           member.c.target_type == "Organization"))
        .where(alive)
    )
    through_role = (
        select(*columns, role.c.target_id.label("unit")).select_from(rows)
        .join(team, of_patient)
        .join(member, and_(member.c.resource_type == _TEAM,
                           member.c.resource_id == team.c.resource_id,
                           member.c.param == "participant",
                           member.c.target_type == "PractitionerRole"))
        .join(role, and_(role.c.resource_type == "PractitionerRole",
                         role.c.resource_id == member.c.target_id,
                         role.c.param == "organization", role.c.target_type == "Organization"))
        .where(alive)
    )
    return union(direct, through_role).subquery("per_unit")


def _count(rows: Subquery, *, by_unit: bool, answers_by_unit: bool) -> Select[Any]:
    """Initial population (rows), denominator and numerator (sums), per period and group,
    and per unit when ``by_unit`` (``answers_by_unit``: the rows' ``who`` is the unit)."""
    if by_unit and not answers_by_unit:
        rows = _with_units(rows)
        unit: ColumnElement[Any] = rows.c.unit
    elif by_unit:
        unit = rows.c.who
    else:
        unit = literal(None, String)
    counts = (func.count().label("initial"), func.sum(rows.c.den).label("den"),
              func.sum(rows.c.num).label("num"))
    keys = (rows.c.n, rows.c.grp, *((unit,) if by_unit else ()))
    return (select(rows.c.n, rows.c.grp, unit.label("unit"), *counts)
            .group_by(*keys).order_by(*keys))
