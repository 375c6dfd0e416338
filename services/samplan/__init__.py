"""SamPlan: the shared care plan (dokumenterad överenskommelse) as a FHIR R4 service."""
