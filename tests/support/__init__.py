"""What many tests share and pytest must not collect: waiting on deadlines, free ports, the
ops-center API's seeded store (``api``), the ingest's brokers, publishers and worker processes
(``ingest``). docs/testing.md says which is which."""
