"""The Avro schemas of staged records: loaded from ``.avsc`` files, fingerprinted.

A :class:`StagedSchema` is one parsed schema with its Parsing Canonical Form and
its single-object header; a :class:`SchemaCatalog` finds schemas by path
(relative to the ``schemas/`` folder) and by fingerprint, which is how readers
recognise the bytes of a staged value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema

from foundation.errors import SchemaError
from staging.codec import single_object_header


@dataclass(frozen=True, slots=True)
class StagedSchema:
    """One Avro record schema, parsed once, identified by its fingerprint."""

    name: str
    """Full name of the Avro record (``namespace.Name``)."""
    path: str
    """Where the schema lives, relative to the schemas folder (``coinbase/matches.avsc``)."""
    parsed: Any = field(repr=False)
    canonical_form: str = field(repr=False)
    header: bytes = field(repr=False)
    """The 10-byte single-object prefix: ``C3 01`` + little-endian fingerprint."""
    field_names: frozenset[str] = field(repr=False)
    required_fields: frozenset[str] = field(repr=False)
    """Fields without a default: a record must give them."""
    full_form: str = field(repr=False)
    """The schema JSON with sorted keys: unlike the canonical form, it keeps logical types."""

    @property
    def fingerprint_hex(self) -> str:
        return self.header[2:].hex()

    @classmethod
    def from_json(cls, schema_json: dict[str, Any], path: str) -> StagedSchema:
        """Parse a schema given as JSON; raises :class:`SchemaError` naming ``path``."""
        if not isinstance(schema_json, dict) or schema_json.get("type") != "record":
            raise SchemaError(f"schema {path}: the top-level type must be an Avro record")
        try:
            parsed: dict[str, Any] = fastavro.parse_schema(schema_json)  # type: ignore[assignment]
            canonical = fastavro.schema.to_parsing_canonical_form(parsed)
        except (fastavro.schema.SchemaParseException, ValueError, TypeError, KeyError) as exc:
            raise SchemaError(f"schema {path}: not valid Avro: {exc}") from exc
        fields = parsed["fields"]
        return cls(
            name=parsed["name"],
            path=path,
            parsed=parsed,
            canonical_form=canonical,
            header=single_object_header(canonical),
            field_names=frozenset(f["name"] for f in fields),
            required_fields=frozenset(f["name"] for f in fields if "default" not in f),
            full_form=json.dumps(schema_json, sort_keys=True),
        )


class SchemaCatalog:
    """Schemas under one folder, by relative path and by fingerprint."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_path: dict[str, StagedSchema] = {}
        self._by_header: dict[bytes, StagedSchema] = {}

    @classmethod
    def default(cls) -> SchemaCatalog:
        """The catalog of the ``schemas/`` folder shipped with durable-ingest."""
        import schemas

        return cls(schemas.SCHEMAS_DIR)

    def load(self, path: str) -> StagedSchema:
        """Load (once) the schema at ``path``, relative to the catalog's root."""
        cached = self._by_path.get(path)
        if cached is not None:
            return cached
        file = (self.root / path).resolve()
        if not file.is_relative_to(self.root.resolve()):
            raise SchemaError(f"schema {path}: outside the schemas folder {self.root}")
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise SchemaError(f"schema {path}: cannot read {file}: {exc.strerror}") from exc
        try:
            schema_json = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"schema {path}: not JSON: {exc}") from exc
        self.register(StagedSchema.from_json(schema_json, path))
        return self._by_path[path]

    def load_all(self) -> list[StagedSchema]:
        """Load every ``.avsc`` file under the root."""
        return [
            self.load(p.relative_to(self.root).as_posix())
            for p in sorted(self.root.rglob("*.avsc"))
        ]

    def register(self, schema: StagedSchema) -> None:
        """Add a schema; refuse one whose fingerprint another, different schema has.

        Avro's Parsing Canonical Form (and so the fingerprint) ignores logical
        types and defaults: a decimal whose scale changed would decode with the
        old scale. Such a change needs a new record name or namespace.
        """
        other = self._by_header.get(schema.header)
        if other is not None and other.path != schema.path:
            if other.full_form != schema.full_form:
                raise SchemaError(
                    f"schema {schema.path} has the fingerprint of {other.path} but differs from it "
                    "(fingerprints ignore logical types and defaults): give the new version a new "
                    "record name or namespace"
                )
            self._by_path[schema.path] = other
            return
        self._by_path[schema.path] = schema
        self._by_header[schema.header] = schema

    def by_header(self, header: bytes) -> StagedSchema | None:
        """The schema whose single-object header is ``header``, if loaded."""
        return self._by_header.get(header)
