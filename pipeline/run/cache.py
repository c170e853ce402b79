"""Content-addressed cache of stage artifacts, source descriptions and reference outputs.

A key is derived from content (source hash, stage options, upstream key, data digests, package
versions), never chosen by hand. Every entry carries the sha256 of what it holds, checked on each use: a stage
entry's `entry.json` and a description are sealed JSON (the document and the entry's own key beside their hash,
which also covers the artifact file's hash, itself checked on every read), a recording has a `seal.json` with its
key and each of its files' hashes. An entry that does not match, or that holds another key's record (copied under
a name not its own: one recipe would ship another's conversion), is deleted with a note and rebuilt, never used.
The seal is a plain hash, not a signature: it stops accidents and copies, not someone who may write the cache and
reseal what they wrote, which is why a model read back from the cache passes the same trust check as a source.
Entries are written under a temporary name and renamed whole. A cache that cannot be written (read-only, full) is
read as it is and no longer written to, with one note.
Knows nothing of recipes, runtimes or reports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.artifacts import copy_hashed, ordinary_mode, sha256_of, write_bytes_atomic
from pipeline.core.artifact import Artifact
from pipeline.core.leftovers import sweep
from pipeline.core.recording import OutputRecording

CACHE_LAYOUT = 5  # bump when the entry format changes; old entries are then ignored (4: each seal holds its key;
# 5: descriptions name repeated outputs apart, TF1 feeds fold into the graph, ONNX reads the one trace)
SEAL = "seal.json"  # a recording's file hashes


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


class _Entries:
    """The entries' life: written whole or not at all, checked against their seal, dropped with a note."""

    def __init__(self, root: Path | None, enabled: bool = True) -> None:
        self.enabled = enabled and root is not None
        self.writable = self.enabled  # False after the first write that failed: the run goes on without storing
        self.root = (root or Path()) / f"v{CACHE_LAYOUT}"
        self.notes: list[str] = []
        self._lock = threading.Lock()  # lanes store from several threads; the cache warns once
        if self.enabled:
            partial = r"\.[0-9a-f]*-(\d+)-.*\.partial"
            left = sweep(self.root / "stages", partial) + sweep(self.root / "recordings", partial)
            if left:
                self.notes.append(f"removed {len(left)} half-built entries a stopped run left")

    def _publish_dir(self, target: Path, fill: Any) -> bool:
        # The process id in the name lets a later run remove what a killed one left (core.leftovers).
        prefix = f".{target.name[:12]}-{os.getpid()}-"
        staging = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix, suffix=".partial"))
            staging.chmod(ordinary_mode(directory=True))
            fill(staging)
            if target.exists():  # another run built the same key first: same content, and it may be reading it
                return True
            os.replace(staging, target)
            return True
        except OSError as error:  # a full or read-only cache must not fail the run
            self._unwritable(error)
            return False
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    def _unwritable(self, error: OSError) -> None:
        with self._lock:
            if self.writable:
                self.writable = False
                self.notes.append(f"could not write the cache ({error}); the run went on without storing to it")

    def _unsealed(self, path: Path, key: str, what: str, then: str, entry: Path) -> dict[str, Any] | None:
        """The document sealed under `key`; None when absent, or dropped (`entry`) with a note when it does not
        match its hash or was sealed under another key."""
        if not path.exists():
            return None
        sealed = _read_json(path)
        record = {"key": sealed.get("key"), "document": sealed.get("document")} if isinstance(sealed, dict) else {}
        if not isinstance(record.get("document"), dict) or _digest(record) != sealed.get("sha256"):
            self._drop(entry, f"{what} did not match its hash; {then}")
            return None
        if record["key"] != key:
            self._drop(entry, f"{what} holds the entry of another key ({_shown(record['key'])}); {then}")
            return None
        return record["document"]

    def _drop(self, entry: Path, note: str) -> None:
        with self._lock:
            self.notes.append(note)
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):  # a read-only cache: it stays, and the next run checks it again
                entry.unlink(missing_ok=True)


class Cache(_Entries):
    """Stage artifacts under `stages/<key>/`, small JSON under `meta/`, recorded outputs under `recordings/`."""

    # --- stage artifacts ---------------------------------------------------------------------------

    def get_artifact(self, key: str) -> CacheHit | None:
        if not self.enabled:
            return None
        entry_dir = self.root / "stages" / key
        entry = self._unsealed(entry_dir / "entry.json", key, f"cache entry {key[:12]}", "rebuilt", entry_dir)
        if entry is None:
            return None
        path = entry_dir / str(entry.get("filename"))
        # A name with a folder in it could point the artifact at any file whose hash the entry states.
        if not _plain_name(entry.get("filename")) or not path.exists() or sha256_of(path) != entry.get("sha256"):
            self._drop(entry_dir, f"cache entry {key[:12]} did not match its hash; rebuilt")
            return None
        artifact = Artifact.from_json(entry["artifact"], path=path, key=key)
        return CacheHit(artifact, float(entry.get("seconds", 0.0)))

    def put_artifact(self, key: str, artifact: Artifact, seconds: float) -> Artifact:
        """Store a finished artifact; returns it pointing into the cache (the work copy may go)."""
        if not self.writable:
            return artifact
        target = self.root / "stages" / key

        def fill(staging: Path) -> None:
            copied = staging / artifact.path.name
            if artifact.path.is_dir():
                shutil.copytree(artifact.path, copied)
                digest = sha256_of(copied)  # of the copy: what the entry holds is what its hash says
            else:
                digest = copy_hashed(artifact.path, copied)
            entry = {"artifact": artifact.to_json(), "filename": artifact.path.name, "sha256": digest}
            (staging / "entry.json").write_bytes(_seal({**entry, "seconds": seconds}, key))

        if not self._publish_dir(target, fill):
            return artifact
        artifact.path = target / artifact.path.name
        return artifact

    # --- small JSON documents and recorded outputs ---------------------------------------------------------

    def get_json(self, kind: str, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        path = self.root / "meta" / kind / f"{key}.json"
        return self._unsealed(path, f"{kind}/{key}", f"cached {kind} entry {key[:12]}", "made afresh", path)

    def put_json(self, kind: str, key: str, document: dict[str, Any]) -> None:
        if not self.writable:
            return
        try:
            write_bytes_atomic(self.root / "meta" / kind / f"{key}.json", _seal(document, f"{kind}/{key}"))
        except OSError as error:
            self._unwritable(error)

    def get_recording(self, key: str) -> OutputRecording | None:
        """Recorded outputs (the source's on an evaluation set), read in place once their hashes are checked; None
        when absent, incomplete or changed (then dropped, with a note)."""
        if not self.enabled:
            return None
        directory = self.root / "recordings" / key
        if not directory.exists():
            return None
        sealed = _read_json(directory / SEAL)
        seal = sealed.get("files") if isinstance(sealed, dict) else None
        recording = OutputRecording.open(directory) if isinstance(seal, dict) else None
        if recording is None:  # a truncated or corrupt entry: drop it and recompute
            self._drop(directory, f"cached outputs {key[:12]} were unreadable; recomputed")
            return None
        if sealed.get("key") != key:
            self._drop(directory, f"cached outputs {key[:12]} hold the entry of another key; recomputed")
            return None
        if sorted(seal) != sorted(recording.files()) or any(
            sha256_of(directory / name) != digest for name, digest in seal.items()
        ):
            self._drop(directory, f"cached outputs {key[:12]} did not match their hash; recomputed")
            return None
        return recording

    def put_recording(self, key: str, recording: OutputRecording) -> OutputRecording:
        """Keep a recording; returns it read from the cache (the temporary one may go)."""
        target = self.root / "recordings" / key

        def fill(staging: Path) -> None:
            seal = {name: copy_hashed(recording.directory / name, staging / name) for name in recording.files()}
            (staging / SEAL).write_text(json.dumps({"key": key, "files": seal}))

        if not self.writable or not self._publish_dir(target, fill):
            return recording
        return OutputRecording.open(target) or recording


def _digest(document: dict[str, Any]) -> str:
    # The document as json.dumps writes it: a round trip through json.loads gives back the same text.
    return hashlib.sha256(json.dumps(document, default=str).encode()).hexdigest()


def _seal(document: dict[str, Any], key: str) -> bytes:
    """The document and the key it is stored under, beside the hash of both: a copy under another key is found."""
    plain = json.loads(json.dumps(document, default=str))  # what a reader will load: Paths as their text
    record = {"key": key, "document": plain}
    return json.dumps({"sha256": _digest(record), **record}).encode()


def _plain_name(name: Any) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


def _shown(key: Any) -> str:
    """Another entry's key as a note may print it: the cache's files are not trusted text."""
    text = str(key)
    return text[:12] if text.replace("/", "").replace("-", "").replace("_", "").isalnum() and text.isascii() else "?"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):  # partial or corrupt: treated as absent, overwritten on the next put
        return None
