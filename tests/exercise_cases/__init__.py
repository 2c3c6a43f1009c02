"""The exercise checkers' test cases, one module per chapter (``chNN.CASES``), run by ``tests/test_exercises.py``.

Each ``CASES`` maps a checker to (a correct answer, [(a known wrong answer, a word its hint must contain), ...]).
"""

from __future__ import annotations

from exercise_cases import ch00, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch09, ch10

CHAPTERS = {"00": ch00.CASES, "01": ch01.CASES, "02": ch02.CASES, "03": ch03.CASES, "04": ch04.CASES,
            "05": ch05.CASES, "06": ch06.CASES, "07": ch07.CASES, "09": ch09.CASES, "10": ch10.CASES}
