"""av_digits, image alone (a baseline for the fused model)."""

from common import IMAGE, make

spec = make("av_digits-image", {"image": IMAGE})
