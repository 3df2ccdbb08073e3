"""A grouped horizontal bar chart written as PNG with the standard library only (zlib, struct).

No plotting dependency: a small RGB canvas, a 5x7 bitmap font (upper case, digits, a little punctuation;
text is drawn upper-cased), and the PNG chunks. Enough for the benchmark charts in ``docs/``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Bar", "BarGroup", "Canvas", "write_bar_chart"]

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
INK: Color = (30, 30, 30)
GRID: Color = (225, 225, 225)
PALETTE: tuple[Color, ...] = ((214, 110, 60), (45, 110, 190), (90, 160, 90), (150, 90, 170))

_GLYPHS = {
    "A": "01110 10001 10001 10001 11111 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 10001 01010 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    "_": "00000 00000 00000 00000 00000 00000 11111",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    "%": "11000 11001 00010 00100 01000 10011 00011",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    "/": "00000 00001 00010 00100 01000 10000 00000",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    "=": "00000 00000 11111 00000 11111 00000 00000",
    "?": "01110 10001 00001 00010 00100 00000 00100",
}


class Canvas:
    """An RGB image in memory."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x: int, y: int, w: int, h: int, color: Color) -> None:
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.width, x + w), min(self.height, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        row = bytes(color) * (x1 - x0)
        for yy in range(y0, y1):
            start = (yy * self.width + x0) * 3
            self.pixels[start : start + len(row)] = row

    def text(self, x: int, y: int, text: str, color: Color = INK, scale: int = 2) -> int:
        """Draw ``text`` with its top-left corner at ``(x, y)``; returns the x after it."""
        for char in text.upper():
            rows = _GLYPHS.get(char, _GLYPHS["?"]).split()
            for r, bits in enumerate(rows):
                for c, bit in enumerate(bits):
                    if bit == "1":
                        self.rect(x + c * scale, y + r * scale, scale, scale, color)
            x += 6 * scale
        return x

    @staticmethod
    def text_width(text: str, scale: int = 2) -> int:
        return len(text) * 6 * scale

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * self.width * 3 : (y + 1) * self.width * 3]) for y in range(self.height)
        )

        def chunk(kind: bytes, payload: bytes) -> bytes:
            return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
        )


@dataclass(frozen=True)
class Bar:
    value: float
    label: str


@dataclass(frozen=True)
class BarGroup:
    title: str
    bars: Sequence[Bar]
    note: str = ""


def write_bar_chart(
    path: str | Path, title: str, subtitle: str, series: Sequence[str], groups: Sequence[BarGroup], width: int = 1000
) -> None:
    """Horizontal bars, one group per row block, bars scaled to the largest value; writes ``path``."""
    scale, line = 2, 18
    bar_h, gap = 18, 4
    left, right = 20, 20
    top = 20 + 2 * line + 10 + line + 10
    block = line + len(series) * (bar_h + gap) + 16
    height = top + len(groups) * block + 10
    canvas = Canvas(width, height)
    canvas.text(left, 20, title, scale=scale)
    fits = (width - left - right) // Canvas.text_width("x", scale)
    subtitle = subtitle if len(subtitle) <= fits else subtitle[: fits - 3] + "..."
    canvas.text(left, 20 + line + 4, subtitle, color=(90, 90, 90), scale=scale)
    x = left
    legend_y = 20 + 2 * line + 14
    for index, name in enumerate(series):
        canvas.rect(x, legend_y, 14, 14, PALETTE[index % len(PALETTE)])
        x = canvas.text(x + 20, legend_y, name, scale=scale) + 24
    largest = max((bar.value for group in groups for bar in group.bars), default=1.0) or 1.0
    label_room = Canvas.text_width("0000000", scale) + 10
    span = width - left - right - label_room
    y = top
    for group in groups:
        canvas.text(left, y, group.title, scale=scale)
        if group.note:
            canvas.text(width - right - Canvas.text_width(group.note, scale), y, group.note, scale=scale)
        y += line
        for index, bar in enumerate(group.bars):
            length = max(1, round(span * bar.value / largest))
            canvas.rect(left, y, span, bar_h, (246, 246, 246))
            canvas.rect(left, y, length, bar_h, PALETTE[index % len(PALETTE)])
            canvas.text(left + length + 6, y + 2, bar.label, scale=scale)
            y += bar_h + gap
        canvas.rect(left, y + 6, width - left - right, 1, GRID)
        y += 16
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(canvas.png())
