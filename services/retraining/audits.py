"""The audit ledger lives in `labelloop.core.audits` (retraining records audits, ingest reports
them in ProjectStatus); this name stays for retraining's imports."""

from labelloop.core.audits import AuditLedger

__all__ = ["AuditLedger"]
