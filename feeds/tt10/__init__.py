"""The TT 10/2021/TT-BTNMT feed (docs/contract.md "Regulatory feed"): one TXT file per continuous
monitoring station per 5-minute cycle, uploaded by FTP or FTPS to the provincial agency.

- ``cycles``: the pure part (cycle labels, Vietnam time, symbols and units, file names and
  lines, worst status); no I/O.
- ``reader``: the readings of the stations' sensors, from the store (SQLite or PostgreSQL /
  TimescaleDB), by SQL.
- ``spool``: the local file spool (30 days kept; unsent files until they are sent).
- ``uploader``: FTP / FTPS with ``ftplib``.
- ``uploads``: the upload log in the database (``tt10_uploads``, what the API shows).
- ``runner``: ``export`` and the ``run`` loop.
"""
