"""A tiny horizontal bar chart written as a PNG with zlib and struct (no plotting library).

One bar per ratio (inject / agent, lower is better), a vertical line at 1.0, labels in a
3x5 bitmap font scaled up. Enough to see at a glance where inject leads and where not.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence

Color = tuple[int, int, int]

WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GREY: Color = (210, 210, 210)
GREEN: Color = (60, 150, 80)
RED: Color = (200, 70, 60)
BLUE: Color = (60, 100, 190)

FONT_SCALE = 2
GLYPH_W, GLYPH_H = 3, 5
ADVANCE_PX = (GLYPH_W + 1) * FONT_SCALE
ROW_H_PX = 26
BAR_H_PX = 16
LABEL_W_PX = 360
RIGHT_MARGIN_PX = 90
TOP_PX = 56
BOTTOM_PX = 40
WIDTH_PX = 1000

# 3x5 glyphs, rows top to bottom, "1" = ink.
_GLYPHS = {
    "A": "010101111101101",
    "B": "110101110101110",
    "C": "011100100100011",
    "D": "110101101101110",
    "E": "111100110100111",
    "F": "111100110100100",
    "G": "011100101101011",
    "H": "101101111101101",
    "I": "111010010010111",
    "J": "001001001101010",
    "K": "101101110101101",
    "L": "100100100100111",
    "M": "101111111101101",
    "N": "110101101101101",
    "O": "010101101101010",
    "P": "110101110100100",
    "Q": "010101101110011",
    "R": "110101110101101",
    "S": "011100010001110",
    "T": "111010010010010",
    "U": "101101101101111",
    "V": "101101101101010",
    "W": "101101111111101",
    "X": "101101010101101",
    "Y": "101101010010010",
    "Z": "111001010100111",
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "110001010100111",
    "3": "110001010001110",
    "4": "101101111001001",
    "5": "111100110001110",
    "6": "011100111101111",
    "7": "111001010010010",
    "8": "111101111101111",
    "9": "111101111001110",
    " ": "000000000000000",
    ".": "000000000000010",
    ",": "000000000010100",
    "-": "000000111000000",
    "/": "001001010100100",
    "%": "101001010100101",
    "(": "010100100100010",
    ")": "010001001001010",
    ":": "000010000010000",
    "=": "000111000111000",
    "<": "001010100010001",
    ">": "100010001010100",
    "_": "000000000000111",
    "+": "000010111010000",
    "#": "101111101111101",
    "?": "110001010000010",
}


class Canvas:
    """An RGB pixel buffer with rectangles and text, serialised as PNG."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """Fill the rectangle [x0, x1) x [y0, y1), clipped to the canvas."""
        x0, x1 = max(0, x0), min(self.width, x1)
        y0, y1 = max(0, y0), min(self.height, y1)
        if x1 <= x0:
            return
        line = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start : start + len(line)] = line

    def text(self, x: int, y: int, text: str, color: Color = BLACK) -> None:
        """Draw ``text`` (upper-cased; unknown characters as '?') with its top-left at (x, y)."""
        for index, char in enumerate(text.upper()):
            bits = _GLYPHS.get(char, _GLYPHS["?"])
            left = x + index * ADVANCE_PX
            for bit, ink in enumerate(bits):
                if ink == "1":
                    row, col = divmod(bit, GLYPH_W)
                    px, py = left + col * FONT_SCALE, y + row * FONT_SCALE
                    self.rect(px, py, px + FONT_SCALE, py + FONT_SCALE, color)

    def png(self) -> bytes:
        """The canvas as PNG bytes (8-bit RGB, no filtering)."""
        stride = self.width * 3
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * stride : (y + 1) * stride]) for y in range(self.height)
        )
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b"")
        )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def text_width(text: str) -> int:
    """Width in pixels of ``text`` drawn by Canvas.text."""
    return len(text) * ADVANCE_PX


def bar_chart(bars: Sequence[tuple[str, float]], title: str, subtitle: str = "") -> bytes:
    """Horizontal bars of ratios with a line at 1.0; green when <= 1 (inject better)."""
    height = TOP_PX + BOTTOM_PX + ROW_H_PX * max(1, len(bars))
    canvas = Canvas(WIDTH_PX, height)
    canvas.text(10, 10, title)
    canvas.text(10, 26, subtitle, BLUE)
    x0 = LABEL_W_PX
    span_px = WIDTH_PX - RIGHT_MARGIN_PX - x0
    top = max([2.0] + [ratio for _, ratio in bars if math.isfinite(ratio)])
    scale_max = math.ceil(top * 1.05 * 2) / 2
    bottom = TOP_PX + ROW_H_PX * len(bars)
    _grid(canvas, x0, span_px, scale_max, bottom)
    for row, (label, ratio) in enumerate(bars):
        y = TOP_PX + row * ROW_H_PX + (ROW_H_PX - BAR_H_PX) // 2
        canvas.text(10, y + 3, label[: (x0 - 20) // ADVANCE_PX])
        if not math.isfinite(ratio):
            canvas.text(x0 + 4, y + 3, "N/A", GREY)
            continue
        length = max(1, round(span_px * min(ratio, scale_max) / scale_max))
        canvas.rect(x0, y, x0 + length, y + BAR_H_PX, GREEN if ratio <= 1.0 else RED)
        canvas.text(x0 + length + 6, y + 3, f"{ratio:.2f}")
    one = x0 + round(span_px / scale_max)
    canvas.rect(one - 1, TOP_PX - 6, one + 1, bottom + 4, BLACK)
    return canvas.png()


def _grid(canvas: Canvas, x0: int, span_px: int, scale_max: float, bottom: int) -> None:
    step = 0.5 if scale_max <= 4 else float(math.ceil(scale_max / 8))
    tick = 0.0
    while tick <= scale_max + 1e-9:
        x = x0 + round(span_px * tick / scale_max)
        canvas.rect(x, TOP_PX - 4, x + 1, bottom, GREY)
        label = f"{tick:g}"
        canvas.text(x - text_width(label) // 2, bottom + 8, label)
        tick += step


def write_chart(path: str, bars: Sequence[tuple[str, float]], title: str, subtitle: str = "") -> None:
    """Write the bar chart PNG to ``path``."""
    with open(path, "wb") as handle:
        handle.write(bar_chart(bars, title, subtitle))
