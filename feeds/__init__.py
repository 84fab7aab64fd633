"""Feeds: what the platform sends to the systems around it (issue #16). Each feed reads the
store, never the broker (docs/design.md, "The field turn"); the TT 10/2021 feed
(``feeds/tt10``) runs as its own small process with its own local file spool."""
