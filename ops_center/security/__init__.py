"""Users, roles, scopes, tokens, abuse limits, database row-level security and broker
credentials of the operations center."""
