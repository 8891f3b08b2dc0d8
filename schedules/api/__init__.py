"""The REST API (`/api/v1/`): thin views over schedules.services, scoped to request.user."""
