"""Avro schemas of staged records, one ``.avsc`` file per resource.

This folder is all a consumer needs to decode a staged record: see
``docs/wire-format.md``. It is a package only so that the files ship inside
the wheel; :data:`SCHEMAS_DIR` is its location on disk.
"""

from pathlib import Path

SCHEMAS_DIR = Path(__file__).resolve().parent

__all__ = ["SCHEMAS_DIR"]
