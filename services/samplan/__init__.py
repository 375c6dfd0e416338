"""SamPlan: the shared care plan (dokumenterad överenskommelse) as a FHIR R4 service."""

__version__ = "0.1.0"
