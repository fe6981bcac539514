"""Writing a build's split: curated and rejected rows, then the manifest last.

Files are written under temporary names and renamed at the end; the old
manifest is removed first, so ``manifest.json`` exists only beside a
complete, matching set of outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator.outputs import write_json


class OutputWriter:
    def __init__(self, output_dir: Path, step_names: list[str], *, per_step: bool) -> None:
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".*.parquet.*.tmp"):
            stale.unlink()
        self.targets = ["curated", "rejected"] + ([f"rejected-{name}" for name in step_names] if per_step else [])
        self.step_names = step_names
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.rows = dict.fromkeys(self.targets, 0)

    def _tmp(self, target: str) -> Path:
        return self.dir / f".{target}.parquet.building.tmp"

    def write(self, batch: pa.RecordBatch) -> None:
        if not self.writers:
            for target in self.targets:
                self.writers[target] = pq.ParquetWriter(self._tmp(target), batch.schema, compression="zstd")
        keep = batch.column("keep")
        self._write("curated", batch.filter(keep))
        rejected = batch.filter(pc.invert(keep))
        self._write("rejected", rejected)
        for name in self.step_names if len(self.targets) > 2 else []:
            self._write(f"rejected-{name}", rejected.filter(pc.equal(rejected.column("dropped_by"), name)))

    def _write(self, target: str, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self.writers[target].write_batch(batch)
            self.rows[target] += batch.num_rows

    def finish(self, manifest: dict[str, Any]) -> None:
        """Close, rename into place, and write the manifest last."""
        manifest_path = self.dir / "manifest.json"
        manifest_path.unlink(missing_ok=True)
        for target, writer in self.writers.items():
            writer.close()
            self._tmp(target).replace(self.dir / f"{target}.parquet")
        manifest["outputs"] = {f"{t}.parquet": rows for t, rows in self.rows.items()}
        write_json(manifest_path, manifest)
