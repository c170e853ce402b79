"""Content-addressed cache of stage artifacts, source descriptions and reference outputs.

A key is derived from content (source hash, stage options, upstream key, data digests, package
versions), never chosen by hand. Entries are written under a temporary name and renamed whole; an
entry whose files no longer match their recorded hash is deleted and rebuilt, never used.
Knows nothing of recipes, runtimes or reports.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.artifacts import ordinary_mode, sha256_of, write_bytes_atomic
from pipeline.core.artifact import Artifact
from pipeline.core.leftovers import sweep
from pipeline.core.recording import OutputRecording

CACHE_LAYOUT = 2  # bump when the entry format changes; old entries are then ignored


def default_cache_dir() -> Path:
    """$EDGEPORT_CACHE_DIR, else $XDG_CACHE_HOME/edgeport, else ~/.cache/edgeport."""
    if os.environ.get("EDGEPORT_CACHE_DIR"):
        return Path(os.environ["EDGEPORT_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgeport"


@dataclass
class CacheHit:
    artifact: Artifact
    seconds: float  # what building it cost when it was made


class Cache:
    """Stage artifacts under `stages/<key>/`, small JSON under `meta/`, recorded outputs under `recordings/`."""

    def __init__(self, root: Path | None, enabled: bool = True) -> None:
        self.enabled = enabled and root is not None
        self.root = (root or Path()) / f"v{CACHE_LAYOUT}"
        self.notes: list[str] = []
        if self.enabled:
            partial = r"\.[0-9a-f]*-(\d+)-.*\.partial"
            left = sweep(self.root / "stages", partial) + sweep(self.root / "recordings", partial)
            if left:
                self.notes.append(f"removed {len(left)} half-built entries a stopped run left")

    # --- stage artifacts ---------------------------------------------------------------------------

    def get_artifact(self, key: str) -> CacheHit | None:
        if not self.enabled:
            return None
        entry_dir = self.root / "stages" / key
        entry = _read_json(entry_dir / "entry.json")
        if entry is None:
            return None
        path = entry_dir / entry["filename"]
        if not path.exists() or sha256_of(path) != entry["sha256"]:
            self.notes.append(f"cache entry {key[:12]} did not match its hash; rebuilt")
            shutil.rmtree(entry_dir, ignore_errors=True)
            return None
        artifact = Artifact.from_json(entry["artifact"], path=path, key=key)
        return CacheHit(artifact, float(entry.get("seconds", 0.0)))

    def put_artifact(self, key: str, artifact: Artifact, seconds: float) -> Artifact:
        """Store a finished artifact; returns it pointing into the cache (the work copy may go)."""
        if not self.enabled:
            return artifact
        target = self.root / "stages" / key
        entry = {
            "artifact": artifact.to_json(),
            "filename": artifact.path.name,
            "sha256": sha256_of(artifact.path),
            "seconds": seconds,
        }

        def fill(staging: Path) -> None:
            copy = shutil.copytree if artifact.path.is_dir() else shutil.copy2
            copy(artifact.path, staging / artifact.path.name)
            (staging / "entry.json").write_text(json.dumps(entry, default=str))

        if not self._publish_dir(target, fill):
            return artifact
        artifact.path = target / artifact.path.name
        return artifact

    # --- small JSON documents and recorded outputs ---------------------------------------------------------

    def get_json(self, kind: str, key: str) -> dict[str, Any] | None:
        return _read_json(self.root / "meta" / kind / f"{key}.json") if self.enabled else None

    def put_json(self, kind: str, key: str, document: dict[str, Any]) -> None:
        if self.enabled:
            write_bytes_atomic(self.root / "meta" / kind / f"{key}.json", json.dumps(document).encode())

    def get_recording(self, key: str) -> OutputRecording | None:
        """Recorded outputs (the source's on an evaluation set), read in place; None when absent or incomplete."""
        if not self.enabled:
            return None
        directory = self.root / "recordings" / key
        if not directory.exists():
            return None
        recording = OutputRecording.open(directory)
        if recording is None:  # a truncated or corrupt entry: drop it and recompute
            self.notes.append(f"cached outputs {key[:12]} were unreadable; recomputed")
            shutil.rmtree(directory, ignore_errors=True)
        return recording

    def put_recording(self, key: str, recording: OutputRecording) -> OutputRecording:
        """Keep a recording; returns it read from the cache (the temporary one may go)."""
        target = self.root / "recordings" / key
        if not self.enabled or not self._publish_dir(target, recording.copy_to):
            return recording
        return OutputRecording.open(target) or recording

    def _publish_dir(self, target: Path, fill: Any) -> bool:
        target.parent.mkdir(parents=True, exist_ok=True)
        # The process id in the name lets a later run remove what a killed one left (core.leftovers).
        prefix = f".{target.name[:12]}-{os.getpid()}-"
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix, suffix=".partial"))
        try:
            staging.chmod(ordinary_mode(directory=True))
            fill(staging)
            if target.exists():  # another run built the same key first: same content, and it may be reading it
                shutil.rmtree(staging, ignore_errors=True)
                return True
            os.replace(staging, target)
            return True
        except OSError as error:  # a full or read-only cache must not fail the run
            self.notes.append(f"could not write the cache ({error}); continuing without it")
            shutil.rmtree(staging, ignore_errors=True)
            return False


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):  # partial or corrupt: treated as absent, overwritten on the next put
        return None
