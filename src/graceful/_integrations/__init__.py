"""Integrations with what stops programs for real: service managers, orchestrators, frameworks."""
