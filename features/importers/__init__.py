"""Bring a bank's own data into the raw-data contract.

* :func:`import_mapped` (``custbase import csv --mapping M --out DIR``): the user's CSV or parquet extracts,
  renamed and recoded by a YAML mapping (see :mod:`features.importers.mapping`).
* :func:`import_berka` (``custbase import berka --src PATH --out DIR``): the public PKDD'99 Czech bank data
  (see :mod:`features.importers.berka`).

Both write contract tables plus ``manifest.json`` into ``out_dir`` and then run
:func:`features.validate.validate_raw`; the report is part of the returned :class:`ImportSummary`.
"""

from __future__ import annotations

from features.importers.berka import import_berka
from features.importers.mapping import import_mapped
from features.importers.tables import ImportSummary, to_contract_frame, write_raw_tables

__all__ = ["ImportSummary", "import_berka", "import_mapped", "to_contract_frame", "write_raw_tables"]
