"""Generated from proto/labelloop/v1 by `make proto`. Do not edit."""
