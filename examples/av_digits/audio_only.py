"""av_digits, audio alone (a baseline for the fused model)."""

from common import AUDIO, make

spec = make("av_digits-audio", {"audio": AUDIO})
