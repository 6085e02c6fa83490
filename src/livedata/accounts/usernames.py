"""Which usernames ``createUser`` accepts, and which count as an existing user's.

A username chosen over DDP is shown to other people (the ``users`` document, the
admin, audit context), so one that looks like another user's is an impersonation tool.
The rule, in order:

1. **No invisible or control characters**: NUL and every other control (Cc), format
   (Cf: zero-width spaces and joiners, bidi overrides), separator (Z*) or unassigned
   character is refused, whatever the user model allows (PostgreSQL cannot even store
   a NUL: that was a 500).
2. **The user model's own rules**: Django's normalisation (``normalize_username``:
   NFKC, so ``admin`` in fullwidth letters or a decomposed ``é`` becomes its plain form,
   which is what is stored), then the username field's validators (for Django's ``User``: letters,
   digits and ``@.+-_``, at most 150 characters).
3. **One script**: the letters must all be of one script (Latin, Cyrillic, Greek, ...),
   as Unicode's "highly restrictive" level (UTS #39, 5.2) says, except the combinations
   Japanese, Chinese and Korean are written in with Latin (Han + Hiragana + Katakana,
   Han + Bopomofo, Han + Hangul). NFKC does not turn the Cyrillic a (U+0430) into a
   Latin ``a``, so ``admin`` spelt with it passed 1 and 2; mixing scripts is refused. Digits and
   ``@.+-_`` belong to no script. The script of a letter is the first word of its
   Unicode name (the standard library has no Script property; this is how
   confusable_homoglyphs does it too, and it is right for letters).
4. **Not an existing user's**: the normalised name is compared case-insensitively
   with existing usernames (the adapter's query), and so is its *skeleton* when it is
   written entirely in Cyrillic or Greek letters that are drawn like Latin ones
   (``ace`` spelt in Cyrillic letters → ``ace``; a subset of UTS #39's confusables for
   the letters that matter).
   Such a name is answered as taken, as Meteor answers a duplicate.

What it does not catch: an all-Latin newcomer that looks like an existing all-Cyrillic
user (the existing names would need skeletons stored), and lookalikes within one script
(``rn`` and ``m``).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from django.core.exceptions import ValidationError

_REFUSED_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")

#: Scripts that may be mixed in one name (UTS #39 "highly restrictive"), Latin included.
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_SCRIPT_ALIASES = {"CJK": "HAN", "IDEOGRAPHIC": "HAN"}

#: Cyrillic and Greek lowercase letters drawn like a Latin one (after casefolding), as
#: escapes (ruff rightly flags the letters themselves): each maps to the Latin letter at
#: the same place in the second string.
_LATIN_LOOKALIKES = str.maketrans(
    "\u0430\u0432\u0441\u0501\u0435\u04bb\u0456\u0458\u043a\u043c\u043d\u043e\u0440\u051b\u0455\u0442\u0443\u051d\u0445\u04af\u04cf"
    "\u03b1\u03b2\u03b5\u03b7\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7\u03c9\u03b6",
    "abcdehijkmhopqstywxylabenikvoptuxwz",
)


def script_of(ch: str) -> str | None:
    """The script of a letter or digit (None: ASCII digits and punctuation, no script)."""
    if ch.isascii():
        return "LATIN" if ch.isalpha() else None
    if unicodedata.category(ch)[0] not in "LMN":
        return None
    word = unicodedata.name(ch, "").split(" ")[0].split("-")[0]
    if word == "COMBINING":
        return None  # marks take the script of their letter (Unicode's "Inherited")
    return _SCRIPT_ALIASES.get(word, word) or None


def scripts(name: str) -> set[str]:
    """The scripts of ``name``'s letters and digits."""
    return {s for s in map(script_of, name) if s is not None}


def skeleton(name: str) -> str | None:
    """The Latin name ``name`` is drawn like, when it is all Cyrillic or Greek lookalikes
    of Latin letters (with any digits and ``@.+-_``); else None."""
    folded = name.casefold()
    if not scripts(folded) or not scripts(folded) <= {"CYRILLIC", "GREEK"}:
        return None
    out = []
    for ch in folded:
        if script_of(ch) is None:
            out.append(ch)
        elif ord(ch) in _LATIN_LOOKALIKES:
            out.append(chr(_LATIN_LOOKALIKES[ord(ch)]))
        else:
            return None
    return "".join(out)


def _refuse_invisible(name: str) -> None:
    for ch in name:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            raise ValidationError(
                f"it contains the invisible or control character U+{ord(ch):04X}",
                code="invisible",
            )


def _one_script(name: str) -> None:
    used = scripts(name)
    if len(used) > 1 and not any(used <= mix for mix in _ALLOWED_MIXES):
        raise ValidationError(
            f"it mixes scripts ({', '.join(sorted(s.title() for s in used))}); write it in one",
            code="mixed-scripts",
        )


def clean(user_model: Any, raw: str) -> str:
    """The username to store for ``raw`` (rules 1 to 3 above); raises ``ValidationError``."""
    _refuse_invisible(raw)
    normalize = getattr(user_model, "normalize_username", None)
    name = normalize(raw) if normalize is not None else unicodedata.normalize("NFKC", raw)
    _refuse_invisible(name)
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    name = field.clean(name, None)
    _one_script(name)
    return name


def variants(name: str) -> list[str]:
    """The names an existing user must not have (compared case-insensitively) for
    ``name`` to be free (rule 4)."""
    drawn_like = skeleton(name)
    return [name] if drawn_like is None or drawn_like == name else [name, drawn_like]
