"""The domain: the agreement <-> CarePlan/CareTeam/Appointment/Goal, and the patient view."""
