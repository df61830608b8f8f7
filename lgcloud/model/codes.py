"""Check digits of the Japanese public identifiers the lab deals in.

>>> local_government_code_is_valid("131016")   # 千代田区
True
>>> my_number_check_digit("62149832025")
7
"""

__all__ = [
    "local_government_check_digit",
    "local_government_code_is_valid",
    "my_number_check_digit",
    "my_number_is_valid",
    "resident_code_is_valid",
]

_LG_WEIGHTS = (6, 5, 4, 3, 2)


def local_government_check_digit(first_five: str) -> int:
    """Check digit of a 全国地方公共団体コード from its first five digits."""
    if len(first_five) != 5 or not first_five.isdigit():
        raise ValueError(f"expected 5 digits, got {first_five!r}")
    total = sum(int(d) * w for d, w in zip(first_five, _LG_WEIGHTS))
    return (11 - total % 11) % 10


def local_government_code_is_valid(code: str) -> bool:
    """True when `code` is six digits whose last one is the right check digit."""
    return len(code) == 6 and code.isdigit() and local_government_check_digit(code[:5]) == int(code[5])


def my_number_check_digit(first_eleven: str) -> int:
    """Check digit of a 個人番号 from its first eleven digits.

    Pₙ is the n-th digit from the right, Qₙ = n+1 for n ≤ 6 and n−5 above.
    """
    if len(first_eleven) != 11 or not first_eleven.isdigit():
        raise ValueError(f"expected 11 digits, got {first_eleven!r}")
    total = sum(int(p) * (n + 1 if n <= 6 else n - 5) for n, p in enumerate(reversed(first_eleven), start=1))
    remainder = total % 11
    return 0 if remainder <= 1 else 11 - remainder


def my_number_is_valid(number: str) -> bool:
    """True when `number` is twelve digits whose last one is the right check digit."""
    return len(number) == 12 and number.isdigit() and my_number_check_digit(number[:11]) == int(number[11])


def resident_code_is_valid(code: object) -> bool:
    """True when `code` has the form of a 住民票コード as the lab issues it: eleven ASCII digits.

    >>> resident_code_is_valid("48213907715"), resident_code_is_valid("1' OR '1'='1")
    (True, False)
    """
    return isinstance(code, str) and len(code) == 11 and code.isascii() and code.isdigit()
