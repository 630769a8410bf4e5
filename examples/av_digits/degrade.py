"""Make the degraded copy of the bundled av_digits data, as AV-MNIST does.

Clean MNIST digits and clean spoken digits are each nearly solved alone, which leaves nothing
for fusion to add. So, like AV-MNIST (Vielzeuf et al. 2018), both are degraded on purpose:

* images: projected onto the top principal components of the training images that keep
  ``IMAGE_ENERGY`` (33%, i.e. 5 components) of the variance, then reconstructed (PCA fitted on
  the train split only; AV-MNIST removed 75% of the energy of its images);
* audio: mixed with white Gaussian noise at ``AUDIO_SNR_DB`` (3 dB) — AV-MNIST used ESC-50
  environmental noise, which is not bundled here — seeded per clip so every run hears the same
  noise.

These settings put each modality alone near AV-MNIST's published unimodal figures (image about
0.7, audio about 0.6 test accuracy), so fusing them has room to help.

The result goes to ``data/degraded/`` (not committed: it is rebuilt in a second when missing).
``python degrade.py`` rebuilds it; train on ``data/pairs.csv`` instead for the clean data.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np

IMAGE_ENERGY = 0.33
AUDIO_SNR_DB = 3.0
HERE = Path(__file__).resolve().parent
CLEAN = HERE / "data"
DEGRADED = CLEAN / "degraded"
VERSION = f"energy={IMAGE_ENERGY};snr={AUDIO_SNR_DB};v1"


def _rows() -> list[dict[str, str]]:
    with open(CLEAN / "pairs.csv", newline="") as f:
        return list(csv.DictReader(f))


def degrade_images(rows: list[dict[str, str]], energy: float = IMAGE_ENERGY) -> int:
    """Reconstruct every image from the principal components keeping ``energy`` of the variance."""
    from PIL import Image  # here, not at the top: an audio-only setup has no Pillow

    pixels = np.stack(
        [np.asarray(Image.open(CLEAN / r["image"]), dtype=np.float64).ravel() / 255 for r in rows]
    )
    train = pixels[[r["split"] == "train" for r in rows]]
    mean = train.mean(0)
    _, s, vt = np.linalg.svd(train - mean, full_matrices=False)
    kept = np.cumsum(s**2) / np.sum(s**2)
    k = int(np.searchsorted(kept, energy) + 1)
    basis = vt[:k]
    recon = (pixels - mean) @ basis.T @ basis + mean
    for row, img in zip(rows, recon, strict=True):
        out = DEGRADED / row["image"]
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img.clip(0, 1) * 255).round().astype(np.uint8).reshape(28, 28)).save(out)
    return k


def degrade_audio(rows: list[dict[str, str]], snr_db: float = AUDIO_SNR_DB) -> None:
    """Add white noise at ``snr_db`` to every clip (the noise seeded by the clip's id)."""
    import soundfile as sf  # here: an image-only setup has no soundfile

    for row in rows:
        wave, rate = sf.read(CLEAN / row["audio"], dtype="float64")
        seed = int.from_bytes(hashlib.sha256(row["id"].encode()).digest()[:4], "little")
        noise = np.random.default_rng(seed).standard_normal(len(wave))
        power = np.mean(wave**2)
        noise *= np.sqrt(power / 10 ** (snr_db / 10))
        mixed = wave + noise
        mixed /= max(1.0, np.abs(mixed).max())
        out = DEGRADED / row["audio"]
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, mixed, rate, format="FLAC", subtype="PCM_16")


def ensure_degraded(kinds: tuple[str, ...] = ("image", "audio")) -> Path:
    """The degraded ``pairs.csv``, with the ``kinds`` of files it names ("image", "audio")
    built first if missing or made with other settings (each kind has its own stamp, so an
    audio-only spec needs neither Pillow nor the images). Processes that start at once (tuning
    workers, tests run in parallel) build it once: the first holds a lock file while the others
    wait, then find the stamps."""
    from filelock import FileLock  # a dependency of torch

    from mmcore.run.atomic import atomic_write_text  # whole or not at all

    table = DEGRADED / "pairs.csv"
    if _built(table, kinds):  # nothing to write: no lock (the folder may be read-only)
        return table
    DEGRADED.mkdir(parents=True, exist_ok=True)
    with FileLock(DEGRADED / ".lock"):
        rows = _rows()
        for kind in kinds:
            if _built(table, (kind,), with_table=False):
                continue
            if kind == "image":
                k = degrade_images(rows)
                print(f"av_digits: wrote degraded images to {DEGRADED} ({k} principal "
                      "components kept)")
            else:
                degrade_audio(rows)
                print(f"av_digits: wrote degraded audio to {DEGRADED}")
            # the stamp last: a build cut short leaves none
            atomic_write_text(DEGRADED / f"VERSION.{kind}", VERSION)
        if not table.is_file():
            with io.StringIO(newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
                atomic_write_text(table, f.getvalue())
    return table


def _built(table: Path, kinds: tuple[str, ...], with_table: bool = True) -> bool:
    """Whether the ``kinds`` of files are there, made with these settings (and the table)."""
    stamps = [DEGRADED / f"VERSION.{kind}" for kind in kinds]
    return (all(s.is_file() and s.read_text() == VERSION for s in stamps)
            and (table.is_file() or not with_table))


if __name__ == "__main__":
    from filelock import FileLock

    DEGRADED.mkdir(parents=True, exist_ok=True)
    with FileLock(DEGRADED / ".lock"):  # no other process between these and the rebuild
        for old in DEGRADED.glob("VERSION*"):
            old.unlink()
    ensure_degraded()
