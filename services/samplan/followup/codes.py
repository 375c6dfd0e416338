"""The ids, URLs and codes of follow-up: the regions' reporting tools are built on them.

Issue 16 fixes the Measure ids, the Questionnaire ids, the RUB code and the SIP
category; change none of them without the regions. Codes the agreement already
defines (its category, KV "typ av fast kontakt", Inera's kind of care plan) are
imported from ``samplan.agreement.codes`` rather than spelled again.
"""

from __future__ import annotations

from typing import Final

from samplan.agreement.codes import (
    AGREEMENT_CATEGORY,
    BASE,
    CAREPLAN_CATEGORY_SYSTEM,
    CONTACT_KIND_SYSTEM,
    INERA_CAREPLAN_TYPE_SYSTEM,
)

__all__ = [
    "AGREEMENT",
    "ANSWER_PARAM",
    "COUNTED_APPOINTMENT_STATUSES",
    "COUNTED_OBSERVATION_STATUSES",
    "COUNTED_PLAN_STATUSES",
    "COUNTED_RESPONSE_STATUSES",
    "FAST_LAKARKONTAKT",
    "FAST_VARDKONTAKT",
    "KV_SYSTEM",
    "MEASURE_BASE",
    "MEASURE_IDS",
    "PATIENT_QUESTIONNAIRE",
    "QUESTIONNAIRE_BASE",
    "RUB",
    "RUB_PROFILE",
    "RUB_SYSTEM",
    "SIP_CODINGS",
    "STAFF_QUESTIONNAIRE",
]

# -- the Measures (issue 16's table, in its order) -------------------------------------------

RUB5_UTAN_FAST_LAKARKONTAKT: Final = "rub5-utan-fast-lakarkontakt"
RUB5_MED_SIP: Final = "rub5-med-sip"
RUB45_MED_OVERENSKOMMELSE: Final = "rub45-med-overenskommelse"
OVERENSKOMMELSE_MED_NASTA_TID: Final = "overenskommelse-med-nasta-tid"
OVERENSKOMMELSE_MED_FAST_VARDKONTAKT: Final = "overenskommelse-med-fast-vardkontakt"
SJU_FRAGOR_PATIENT: Final = "sju-fragor-patient"
SJU_FRAGOR_PERSONAL: Final = "sju-fragor-personal"

MEASURE_IDS: Final = (
    RUB5_UTAN_FAST_LAKARKONTAKT,
    RUB5_MED_SIP,
    RUB45_MED_OVERENSKOMMELSE,
    OVERENSKOMMELSE_MED_NASTA_TID,
    OVERENSKOMMELSE_MED_FAST_VARDKONTAKT,
    SJU_FRAGOR_PATIENT,
    SJU_FRAGOR_PERSONAL,
)
MEASURE_BASE: Final = f"{BASE}/Measure"
"""``Measure.url`` is ``{MEASURE_BASE}/{id}``."""

# -- the seven questions ----------------------------------------------------------------------

QUESTIONNAIRE_BASE: Final = f"{BASE}/Questionnaire"
PATIENT_QUESTIONNAIRE: Final = f"{QUESTIONNAIRE_BASE}/{SJU_FRAGOR_PATIENT}"
"""Answered by a patient (or a relative for them) about themselves: subject = Patient."""
STAFF_QUESTIONNAIRE: Final = f"{QUESTIONNAIRE_BASE}/{SJU_FRAGOR_PERSONAL}"
"""Answered by staff about their unit: subject = Organization."""

ANSWER_PARAM: Final = "item-answer"
"""QuestionnaireResponse search parameter: linkId as system, the answer as code."""

COUNTED_RESPONSE_STATUSES: Final = ("completed", "amended")
"""Responses that count (in-progress and stopped ones do not)."""

# -- the RUB level ----------------------------------------------------------------------------

RUB_SYSTEM: Final = f"{BASE}/CodeSystem/indicator-observation"
RUB: Final = "rub"
RUB_PROFILE: Final = f"{BASE}/StructureDefinition/samplan-rub-observation"
COUNTED_OBSERVATION_STATUSES: Final = ("final", "amended", "corrected")
"""A RUB level counts once it is final (or later corrected)."""

# -- what the criteria look for -------------------------------------------------------------------

AGREEMENT: Final = (CAREPLAN_CATEGORY_SYSTEM, str(AGREEMENT_CATEGORY["code"]))
"""The agreement: ``CarePlan.category`` careplan-category#dokumenterad-overenskommelse."""

SIP_CODINGS: Final = (
    (CAREPLAN_CATEGORY_SYSTEM, "sip"),
    (INERA_CAREPLAN_TYPE_SYSTEM, "SIP"),
)
"""A SIP is a CarePlan with either category (ours, or the code national services use)."""

COUNTED_PLAN_STATUSES: Final = ("active", "completed")
"""A plan counts in a period it overlaps when active now, or completed (it ran its course)."""

KV_SYSTEM: Final = CONTACT_KIND_SYSTEM
FAST_VARDKONTAKT: Final = "1"
FAST_LAKARKONTAKT: Final = "2"

COUNTED_APPOINTMENT_STATUSES: Final = ("booked", "arrived", "checked-in", "fulfilled")
"""A booked time: booked, or since then come to pass (arrived, checked in, fulfilled)."""
