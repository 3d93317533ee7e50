"""Pure-Python PTB tokenisation as the COCO-caption toolkit (pycocoevalcap) does it.

pycocoevalcap pipes captions through Stanford CoreNLP 3.4.1's ``PTBTokenizer -preserveLines
-lowerCase`` (Java) and then drops the tokens in :data:`PUNCTUATIONS`. This module re-implements
that pipeline without Java for the text that quality descriptions contain: words, hyphenated
words, contractions (``n't 's 're 've 'll 'd 'm``, ``cannot``, ``gonna``...), straight and curly
quotes, brackets (which become ``-lrb-`` etc. and, lower-cased, are *not* dropped: a quirk of
pycocoevalcap that is kept on purpose), numbers (``3.5``, ``1,000``, ``12:30``, ``50%``,
``$5``), abbreviations (the CoreNLP 3.4.1 list, probed from the jar), ellipses and dashes.
Parity with the Java tokeniser is tested on a corpus of quality descriptions
(``tests/test_bench_bleu.py``); exotic strings (URLs, e-mail addresses, SGML tags, emoticons)
may tokenise differently.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["PUNCTUATIONS", "ptb_tokenize"]

#: Tokens pycocoevalcap removes after tokenising (note: upper-case bracket names only).
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Abbreviations whose final period CoreNLP 3.4.1 keeps in any context (case-sensitive, probed).
_ABBREV_ALWAYS = frozenset(
    """Jan jan Feb feb Mar mar apr Apr Jun jun jul Jul Aug aug Sep sep Sept sept oct Oct nov Nov
    Dec dec mon Mon Tue tue Tues tues wed Wed Thu thu Thurs thurs fri Fri Ala ala ariz Ariz Az Ark
    calif Calif Colo colo Conn conn Ct ct dak Dak Del Fla fla ga Ga Ill ind Ind Kan kan Kans kans
    Ky ky La Mass md Md mich Mich minn Minn Miss mo Mo mont Mont Neb neb Nev nev okla Okla Ore Pa
    Penn penn tenn Tenn Tex Va va vt Vt Wash Wis wis wisc Wisc wyo Wyo inc Inc co Co cos Cos corp
    Corp Pty pty ltd Ltd plc Plc Rt rt bancorp Bancorp bhd Bhd Assn assn univ Univ intl Intl sys
    Sys tel Tel est Est ext Ext Sq sq Jr jr Sr sr bros Bros Esq esq etc Etc al Al seq Seq bldg
    Bldg Mr mr mrs Mrs Ms ms Dr dr Drs drs prof Prof Profs profs sen Sen sens Sens rep Rep reps
    Reps atty Atty attys Attys Lt lt Col col Gen gen Messrs messrs Gov gov govs Govs adm Adm rev
    Rev maj Maj Sgt sgt cpl Cpl Pvt pvt Capt capt st St ste Ste ave Ave Pres pres lieut Lieut hon
    Hon Brig brig Cmdr cmdr comdr Comdr Pfc pfc spc Spc Supt supt Det det mt Mt ft Ft Adj adj adv
    Adv asst Asst Assoc assoc ens Ens insp Insp Mlle mlle Mme mme Msgr msgr sfc Sfc Invt invt elec
    Elec natl Natl Mfg mfg Mtg mtg dept Dept Blvd blvd rd Rd wm Wm jos Jos cie Cie Cf cf Ph ph vs
    Vs""".split()
)
# Kept unless an upper-case word follows.
_ABBREV_NOT_BEFORE_UPPER = frozenset(["v", "V", "p", "P"])
# Kept only before a number ("Fig. 3", "No. 5").
_ABBREV_BEFORE_DIGIT = frozenset("Fig fig figs Figs No no nos Nos Ca ca pp Pp art Art op Op".split())

# After a one-letter acronym (or v./p.) these words mean "sentence boundary" (probed, 3.4.1).
_SENTENCE_STARTERS = frozenset(
    """A About According Additionally After An As At But Earlier He Her Here However If In It
    Last Many More Mr. Ms. Now Once One Other Our She Since So Some Such That The Their Then
    There These They This We When While What Yet You""".split()
)
_ACRONYM = re.compile(r"[A-Za-z](?:\.[A-Za-z])*")
_DECIMAL = re.compile(r"[-+]?\d*\.\d+")
_WORD_THEN_DECIMAL = re.compile(r"(.*[A-Za-z].*?)(\.\d+)")
_SGML = re.compile(r"</?[A-Za-z][^<>]*>")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9]")
_DECIMAL_UNIT = re.compile(r"([-+]?\d*\.\d+)([A-Za-z]+)")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:[.,:]\d+)*|\d*(?:[.,]\d+)+)")
_CLITIC = re.compile(r"^(.+?)((?:n't|'s|'re|'ve|'ll|'d|'m)+)$", re.IGNORECASE)
_CLITIC_PARTS = re.compile(r"n't|'s|'re|'ve|'ll|'d|'m", re.IGNORECASE)
_SPLIT_WORDS = {  # CoreNLP splits these "words" in two
    "cannot": 3, "gonna": 3, "gotta": 3, "wanna": 3, "lemme": 3, "gimme": 3,
}
_APOS_WORDS = frozenset(["'em", "'cause", "'til", "'till", "'n", "'n'"])
_OPEN = {"(": "-LRB-", "[": "-LSB-", "{": "-LCB-"}
_CLOSE = {")": "-RRB-", "]": "-RSB-", "}": "-RCB-"}
_SYMBOLS = re.compile(r"([*=~^|<>@#$%&+\u00a2\u00a4\u00a5])")
_UNICODE = str.maketrans({
    "\u2019": "'", "\u2018": "'", "\u201b": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u20ac": "$", "\u00a3": "#", "\u00a0": " ",
})
_SPACED = [("\u2014", " -- "), ("\u2013", " -- "), ("\u2026", " ... ")]
_WS = re.compile(r"\s+")


def ptb_tokenize(text: str) -> list[str]:
    """Tokenise one caption like pycocoevalcap: PTB tokens, lower-cased, punctuation removed.

    ``"The man's face isn't sharp (left)."`` -> ``["the", "man", "'s", "face", "is", "n't",
    "sharp", "-lrb-", "left", "-rrb-"]``.
    """
    text = text.replace("\n", " ").translate(_UNICODE)
    for old, new in _SPACED:
        if old in text:
            text = text.replace(old, new)
    chunks = text.split()
    out: list[str] = []
    extend = out.extend
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        if "." in chunk:  # only the period rules look at the next chunk
            extend(_chunk(chunk, _context(chunks[i + 1]) if i < last else ""))
        else:
            extend(_chunk(chunk, ""))
    return out


def _context(nxt: str) -> str:
    """What follows a chunk, as the period rules need it: "", "digit", "upper" or "other".

    "upper" means a capitalised word that CoreNLP takes as the start of a new sentence.
    """
    if not nxt:
        return ""
    if nxt[0].isdigit():
        return "digit"
    word = nxt.rstrip(",;:?!\"')]}")
    if word in _SENTENCE_STARTERS or (word.endswith(".") and word[:-1] in ("Mr", "Ms")):
        return "upper"
    return "other"


@lru_cache(maxsize=200_000)
def _chunk(chunk: str, ctx: str) -> tuple[str, ...]:
    if chunk.isalpha():
        n = _SPLIT_WORDS.get(chunk.lower())
        if n:
            return (chunk[:n].lower(), chunk[n:].lower())
        return (chunk.lower(),)
    # lower-case first: "-LRB-" becomes "-lrb-" and survives the filter, as in pycocoevalcap
    return tuple(t for t in (t.lower() for t in _raw_chunk(chunk, ctx)) if t not in PUNCTUATIONS)


def _raw_chunk(c: str, ctx: str) -> list[str]:
    front: list[str] = []
    back: list[str] = []
    # leading quotes and brackets
    while c:
        ch = c[0]
        if ch == '"':
            front.append("``")
            c = c[1:]
        elif c.startswith("``"):
            front.append("``")
            c = c[2:]
        elif ch in _OPEN:
            front.append(_OPEN[ch])
            c = c[1:]
        elif ch == "`":
            front.append("`")
            c = c[1:]
        elif ch == "'" and not _keeps_leading_apostrophe(c):
            front.append("`")
            c = c[1:]
        else:
            break
    # trailing punctuation, read right to left
    after = ""  # what directly follows the core (for the period rule)
    while c:
        if c.endswith("..."):
            back.append("...")
            c = c[:-3]
            after = "."
        elif c[-1] in _CLOSE:
            back.append(_CLOSE[c[-1]])
            c = c[:-1]
            after = ")"
        elif c[-1] == '"' or c.endswith("''"):
            back.append("''")
            c = c[:-2] if c.endswith("''") else c[:-1]
            after = '"'
        elif c[-1] == "'" and c not in _APOS_WORDS and not c.lower().endswith(("'n'",)) and len(c) > 1:
            if c.lower() in ("y'", "th'"):
                break
            back.append("'")
            c = c[:-1]
            after = "'"
        elif c[-1] in "?!":
            j = len(c)
            while j > 0 and c[j - 1] in "?!":
                j -= 1
            if j == 0:
                break
            back.append(c[j:])
            c = c[:j]
            after = "?"
        elif c[-1] in ",;:":
            back.append(c[-1])
            c = c[:-1]
            after = ","
        elif c[-1] == "." and len(c) > 1:
            if c.endswith(".."):
                back.append(".")
                c = c[:-1]
                after = "."
                continue
            core = c[:-1]
            if (after == "," and not _DECIMAL.fullmatch(core)) or _keeps_period(
                core, ctx if not back else "other"
            ):
                break
            back.append(".")
            c = core
            after = "."
        else:
            break
    core = _core(c) if c else []
    return front + core + back[::-1]


def _keeps_leading_apostrophe(c: str) -> bool:
    low = c.lower()
    return (
        _CLITIC_PARTS.fullmatch(low.rstrip(".,;:?!\"')]}")) is not None
        or low.startswith(("'em", "'cause", "'til", "'n'", "'tis", "'twas"))
        or re.match(r"'\d0s", low) is not None
    )


def _keeps_period(core: str, ctx: str) -> bool:
    if core in _ABBREV_ALWAYS:
        return True
    if core in _ABBREV_NOT_BEFORE_UPPER:
        return ctx != "upper"
    if core in _ABBREV_BEFORE_DIGIT:
        return ctx == "digit"
    if _ACRONYM.fullmatch(core):
        # a single letter before a capitalised word ends the sentence; "U.S." never does
        return len(core) > 1 or ctx != "upper"
    return False


def _core(c: str) -> list[str]:
    if c in _OPEN or c in _CLOSE:
        return [_OPEN.get(c) or _CLOSE[c]]
    if re.fullmatch(r"-{2,}", c):
        return ["--"]
    if c == "-":
        return ["-"]
    if "--" in c:
        parts = re.split(r"(-{2,})", c)
        out: list[str] = []
        for p in parts:
            if p:
                out.extend(["--"] if p.startswith("--") else _core(p))
        return out
    if _SGML.fullmatch(c) or _EMAIL.fullmatch(c):
        return [c]
    if "..." in c:
        out = []
        for p in re.split(r"(\.\.\.)", c):
            if p:
                out.extend(["..."] if p == "..." else _core(p))
        return out
    low = c.lower()
    if low in ("'tis", "'twas"):
        return [c[:2], c[2:]]
    if low.startswith(("y'", "th'")) and len(c) > low.index("'") + 1:
        k = low.index("'") + 1
        return [c[:k]] + _core(c[k:])
    if re.fullmatch(r"[A-Za-z]+'n'[A-Za-z]+", c):
        a, _, b = c.partition("'n'")
        return [a, "'n'", b]
    n = _SPLIT_WORDS.get(low)
    if n:
        return [c[:n], c[n:]]
    # hyphen next to a clitic: "don't-care" -> do n't - care
    if "-" in c and "'" in c and not c.startswith("-"):
        out = []
        for k, p in enumerate(c.split("-")):
            if k:
                out.append("-")
            if p:
                out.extend(_core(p))
        return out
    # symbols that stand alone: "$5", "50%", "a=b", "x*y", "~5"
    if _SYMBOLS.search(c) and not _NUMBER.fullmatch(c):
        if "&" in c and re.fullmatch(r"[A-Za-z]+(?:&[A-Za-z]+)+", c):
            return [c]
        if c.startswith("@") and c[1:].isalnum():
            return [c]
        out = []
        parts = [p for p in _SYMBOLS.split(c) if p]
        k = 0
        while k < len(parts):
            p = parts[k]
            if p == "+" and k + 1 < len(parts) and _NUMBER.fullmatch(parts[k + 1]) and out:
                out.append("+" + parts[k + 1])  # "5+5" -> 5 +5
                k += 2
                continue
            out.extend([p] if _SYMBOLS.fullmatch(p) else _core(p))
            k += 1
        return out
    # separators inside a word: "a,b" -> a , b
    if re.search(r"[,;]", c) and not _NUMBER.fullmatch(c):
        out = []
        for p in re.split(r"([,;])", c):
            if p:
                out.extend([p] if p in ",;" else _core(p))
        return out
    m = _DECIMAL_UNIT.fullmatch(c)
    if m:
        return [m.group(1), m.group(2)]
    m = _WORD_THEN_DECIMAL.fullmatch(c)
    if m and not _NUMBER.fullmatch(c):
        return [m.group(1), m.group(2)]  # "v1.2" -> v1 .2, "f/2.8" -> f/2 .8
    m = _CLITIC.match(c)
    if m and "'" in c and not c.startswith("'"):
        return [m.group(1)] + _CLITIC_PARTS.findall(m.group(2))  # "I'd've" -> I 'd 've
    return [c]
