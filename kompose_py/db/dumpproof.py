"""The evidence kept beside a dump, ``<dump>.json`` (db/manifest.py): written by an export
right after it publishes the dump, checked by an import before anything is touched and by a
verification.

Decisions (what a DBA expects of a careful backup tool):

- The dump is what matters; the manifest describes it. So a dump is published as soon as it
  is complete, and its manifest follows at once (atomically: temporary file, fsync, rename).
  A crash in between, or a manifest that cannot be written (a full disk), leaves a complete
  dump without a manifest: a warning says so, and such a dump is treated like kompose.sh's
  and older kompose's dumps (imported and verified by restore alone, and said so). An export
  never fails a good dump over its description.
- Row counts are taken at pg_dump's own snapshot (db/snapshot.py). When that cannot be done
  (the counting session fails, the server cannot export a snapshot), the dump still goes
  ahead and counts: its manifest says ``"row_counts": null`` with ``row_counts_error``, the
  export warns, and a verification restores it without comparing counts, and says so.
- A manifest that exists but does not fit its dump (size, sha256) or cannot be read refuses
  an import before anything is touched (``--force`` imports anyway, with a warning): the bytes
  are not the bytes that were written.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from kompose_py.db import manifest as mf
from kompose_py.db.reach import AccessKind
from kompose_py.db.snapshot import SnapshotCounts
from kompose_py.lifecycle import StackRun

_HEAD = 1 << 16
_FROM = re.compile(rb"^-- Dumped from database version (\S+)", re.MULTILINE)
_BY = re.compile(rb"^-- Dumped by pg_dump version (\S+)", re.MULTILINE)


def describe(dump: Path, by_kompose: bool = False
             ) -> tuple[str, str, str, str | None, str | None]:
    """By its content: (format, compression, compressed_by, pg_dump version, server
    version) of a published dump; ``by_kompose``: kompose compressed a plain dump's stream
    (else pg_dump did)."""
    from kompose_py.db.compression import decompressed, method_of
    from kompose_py.db.postgres.archives import Incomplete, archive_format, read_archive

    kind = archive_format(dump) or "plain"
    if kind in ("custom", "directory"):
        try:
            archive = read_archive(dump)
        except Incomplete:
            return kind, "none", "none", None, None
        method = archive.compression
        return (kind, method, "pg_dump" if method != "none" else "none",
                archive.pg_dump_version or None, archive.server_version or None)
    method = method_of(dump)
    head = b""
    try:
        for chunk in decompressed(dump, method, chunk=_HEAD):
            head = chunk
            break
    except (OSError, ValueError):
        pass
    by, server = _BY.search(head), _FROM.search(head)
    by_whom = "none" if method == "none" else "kompose" if by_kompose else "pg_dump"
    return ("plain", method, by_whom,
            by[1].decode() if by else None, server[1].decode() if server else None)


class DumpEvidence:
    """Around one pg_dump: the snapshot shared with it and the counts taken at it; then,
    once the dump is published, its manifest."""

    def __init__(self, run: StackRun, access: AccessKind, kompose_compresses: bool = False
                 ) -> None:
        self.run, self.access = run, access
        self.kompose_compresses = kompose_compresses
        self.session: SnapshotCounts | None = None

    def __enter__(self) -> DumpEvidence:
        if self.run.ctx.dry_run:
            self.run.note("would count each table's rows at the snapshot pg_dump dumps "
                          "(pg_export_snapshot, pg_dump --snapshot) for the manifest")
            return self
        self.session = SnapshotCounts(self.run, self.access).__enter__()
        return self

    def pg_dump_options(self) -> list[str]:
        """``--snapshot=<id>`` when a snapshot was exported for this dump."""
        snapshot = self.session.snapshot if self.session else None
        return [f"--snapshot={snapshot}"] if snapshot else []

    def dumped(self, ok: bool) -> None:
        """pg_dump has ended (``ok``: exit 0)."""
        if self.session is not None:
            self.session.done(ok)

    def __exit__(self, *exc: object) -> None:
        if self.session is not None:
            self.session.__exit__(*exc)

    def record(self, final: Path, when: datetime,
               hashed: tuple[str, int] | None = None) -> None:
        """Write ``<final>.json``. Never fails the export: a warning says what is missing.
        ``hashed``: (sha256, size) of a plain dump taken while it was written."""
        session = self.session
        if session is None:
            return
        counts, error = session.counts, session.error
        if counts is None:  # said only for a dump that was published
            self.run.warn(f"row counts not taken ({error}); the dump is complete and its "
                          f"manifest says the counts are unknown")
        try:
            sha, size, files = (*hashed, ()) if hashed is not None else mf.digest(final)
            kind, method, by, tool, server = describe(final, self.kompose_compresses)
            manifest = mf.Manifest(
                dump=final.name, format=kind, compression=method, compressed_by=by,
                size=size, sha256=sha, files=files, database=self.access.db.name,
                created=when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                pg_dump_version=tool or "unknown",
                server_version=session.server_version or server or "unknown",
                row_counts=counts, snapshot=session.snapshot if counts is not None else None,
                row_counts_error=None if counts is not None else (error or "unknown"))
            path = mf.write_manifest(final, manifest)
        except (OSError, mf.ManifestError) as exc:
            reason = exc.message if isinstance(exc, mf.ManifestError) else \
                (exc.strerror or str(exc))
            self.run.warn(f"the manifest of {final.name} could not be written ({reason}); "
                          f"the dump is complete and will be checked by restore alone")
            return
        self.run.note(f"manifest {path.name}: sha256 {manifest.sha256[:12]}…, "
                      + (f"{len(counts)} tables counted at pg_dump's snapshot"
                         if counts is not None else "row counts unknown"))


# -- reading a dump back ----------------------------------------------------------------------
