"""The lexical rules of Stanford CoreNLP 3.4.1's ``PTBLexer`` (JFlex), as Python regexes.

The macros below are the ``PTBLexer.flex`` definitions of that release, translated by
:func:`translate` from JFlex syntax (``%caseless``: a letter outside a character class matches
either case; ``[:letter:]``, ``[:digit:]``, ``[:uppercase:]``: the jar's own tables in
:mod:`giqa.bench._ptb_chars`). :data:`RULES` lists the lexer rules in the file's order, each
with its trailing context and the action's name; :mod:`giqa.bench._ptb_lexer` runs them with
JFlex's longest-match semantics. Python's ``re`` takes the first alternative that matches
rather than the longest, so where that differs the macros are rewritten, same language, with
the longer alternative first: ``NEWLINE`` (``\r?\n`` first), ``SENTEND`` (``SGML`` first),
``NUM`` (the separated form first), ``FILENAME_EXT`` (longest extensions first), ``THINGA``
(``&amp;`` first), ``ACRO`` and ``ABBREV4`` (the ``U.S.-U.K.`` forms first), ``SGML`` (an
attribute with a value first), ``HTHING`` (``ACRO2``'s ``U.S.``-forms dropped: its other
alternatives read the same strings); ``LIKELYURL`` is split into host-with-path and host
alone, and rules whose pattern is one alternation (``split=True``) become one candidate per
alternative. ``ACRONYM_NEXT`` names the trailing context of the acronym rule, inline in the
.flex file; ``FRACSTB3`` (strict Treebank 3 mode, not the default) is left out.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional

from giqa.bench._ptb_chars import DIGIT as _DIGIT_CLASS, LETTER as _LETTER_CLASS, UPPER as _UPPER_CLASS

__all__ = ["Rule", "RULES", "translate", "split_alternatives"]

_LEX_MACROS = r"""
SGML = \<([!\?][A-Za-z\-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:\.\-]*([ ]+([A-Za-z][A-Za-z0-9_:\.\-]*[ ]*=[ ]*('[^']*'|\"[^\"]*\")|[A-Za-z][A-Za-z0-9_:\.\-]*))*[ ]*\/?|\/[A-Za-z][A-Za-z0-9_:\.\-]*)[ ]*\>
SPMDASH = &(MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]
SPAMP = &amp;
SPPUNC = &(HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);
SPLET = &[aeiouAEIOU](acute|grave|uml);
SPACE = [ \t\u00A0\u2000-\u200A\u3000]
SPACES = {SPACE}+
NEWLINE = \r?\n|\r|\u2028|\u2029|\u000B|\u000C|\u0085
SPACENL = ({SPACE}|{NEWLINE})
SPACENLS = {SPACENL}+
SENTEND = {SPACENL}({SGML}|{SPACENL}|[:uppercase:])
DIGIT = [:digit:]|[\u07C0-\u07C9]
DATE = {DIGIT}{1,2}[\-\/]{DIGIT}{1,2}[\-\/]{DIGIT}{2,4}
NUM = {DIGIT}*([.:,\u00AD\u066B\u066C]{DIGIT}+)+|{DIGIT}+
NUMBER = [\-+]?{NUM}
SUBSUPNUM = [\u207A\u207B\u208A\u208B]?([\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)
FRAC = ({DIGIT}{1,4}[- \u00A0])?{DIGIT}{1,4}(\\?\/|\u2044){DIGIT}{1,4}
FRAC2 = [\u00BC\u00BD\u00BE\u2153-\u215E]
DOLSIGN = ([A-Z]*\$|#)
DOLSIGN2 = [\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]
LETTER = ([:letter:]|{SPLET}|[\u00AD\u0237-\u024F\u02C2-\u02C5\u02D2-\u02DF\u02E5-\u02FF\u0300-\u036F\u0370-\u037D\u0384\u0385\u03CF\u03F6\u03FC-\u03FF\u0483-\u0487\u04CF\u04F6-\u04FF\u0510-\u0525\u055A-\u055F\u0591-\u05BD\u05BF\u05C1\u05C2\u05C4\u05C5\u05C7\u0615-\u061A\u063B-\u063F\u064B-\u065E\u0670\u06D6-\u06EF\u06FA-\u06FF\u070F\u0711\u0730-\u074F\u0750-\u077F\u07A6-\u07B1\u07CA-\u07F5\u07FA\u0900-\u0903\u093C\u093E-\u094E\u0951-\u0955\u0962-\u0963\u0981-\u0983\u09BC-\u09C4\u09C7\u09C8\u09CB-\u09CD\u09D7\u09E2\u09E3\u0A01-\u0A03\u0A3C\u0A3E-\u0A4F\u0A81-\u0A83\u0ABC-\u0ACF\u0B82\u0BBE-\u0BC2\u0BC6-\u0BC8\u0BCA-\u0BCD\u0C01-\u0C03\u0C3E-\u0C56\u0D3E-\u0D44\u0D46-\u0D48\u0E30-\u0E3A\u0E47-\u0E4E\u0EB1-\u0EBC\u0EC8-\u0ECD])
WORD = {LETTER}({LETTER}|{DIGIT})*([.!?]{LETTER}({LETTER}|{DIGIT})*)*
FILENAME_EXT = class|docx|html|java|jpeg|bat|bmp|cgi|cpp|dll|doc|exe|gif|htm|jar|jpg|mov|mp3|pdf|php|png|ppt|sql|tar|txt|wav|xml|zip|gz|pl|ps|py|c|h|x
FILENAME = ({LETTER}|{DIGIT})+([.]({LETTER}|{DIGIT})+)*([.]{FILENAME_EXT})
APOS = ['\u0092\u2019]|&apos;
APOSETCETERA = {APOS}|[`\u0091\u2018\u201B]
HYPHEN = [-_\u058A\u2010\u2011]
THING = ([dDoOlL]{APOSETCETERA}([:letter:]|[:digit:]))?([:letter:]|[:digit:])+({HYPHEN}([dDoOlL]{APOSETCETERA}([:letter:]|[:digit:]))?([:letter:]|[:digit:])+)*
THINGA = [A-Z]+(({SPAMP}|[+&])[A-Z]+)+
THING3 = [A-Za-z0-9]+(-[A-Za-z]+){0,2}(\\?\/[A-Za-z0-9]+(-[A-Za-z]+){0,2}){1,2}
HTHING = [A-Za-z0-9][A-Za-z0-9.,\u00AD]*(-([A-Za-z](\.[A-Za-z])+\.|[A-Za-z0-9\u00AD]+))+
REDAUX = {APOS}([msdMSD]|re|ve|ll)
SWORD = [A-Za-z\u00AD]*[A-MO-Za-mo-z](\u00AD)*
SREDAUX = n{APOSETCETERA}t
APOWORD = {APOS}n{APOS}?|[lLdDjJ]{APOS}|Dunkin{APOS}|somethin{APOS}|ol{APOS}|{APOS}em|[A-HJ-XZn]{APOSETCETERA}[:letter:]{2}[:letter:]*|{APOS}[2-9]0s|{APOS}till?|[:letter:][:letter:]*[aeiouyAEIOUY]{APOSETCETERA}[aeiouA-Z][:letter:]*|{APOS}cause|cont'd\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l|O{APOSETCETERA}o
APOWORD2 = y{APOS}
FULLURL = https?:\/\/[^ \t\n\f\r\"<>|(){}]+[^ \t\n\f\r\"<>|.!?(){},-]
LIKELYURL = {URLHOST}{URLPATH}|{URLHOST}
URLHOST = ((www\.([^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})|(([^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+(com|net|org|edu)))
URLPATH = (\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])
EMAIL = (&lt;|<)?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0{}]*@([^ \t\n\f\r\"<>|(){}.\u00A0]+\.)*([^ \t\n\f\r\"<>|(){}.\u00A0]+)(&gt;|>)?
TWITTER_NAME = @[a-zA-Z_][a-zA-Z_0-9]*
TWITTER_CATEGORY = #{LETTER}+
TWITTER = {TWITTER_NAME}|{TWITTER_CATEGORY}
ABMONTH = Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec
ABDAYS = Mon|Tue|Tues|Wed|Thu|Thurs|Fri
ABSTATE = Ala|Ariz|[A]z|[A]rk|Calif|Colo|Conn|Ct|Dak|[D]el|Fla|Ga|[I]ll|Ind|Kans?|Ky|[L]a|[M]ass|Md|Mich|Minn|[M]iss|Mo|Mont|Neb|Nev|Okla|[O]re|[P]a|Penn|Tenn|[T]ex|Va|Vt|[W]ash|Wisc?|Wyo
ABCOMP = Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys
ABNUM = tel|est|ext|sq
ABPTIT = Jr|Sr|Bros|(Ed|Ph)\.D|Blvd|Rd|Esq
ABBREV1 = ({ABMONTH}|{ABDAYS}|{ABSTATE}|{ABCOMP}|{ABNUM}|{ABPTIT}|etc|al|seq|Bldg)\.
ACRO = U\.S\.-(U\.K|U\.S\.S\.R)|(Canada|Sino|Korean|EU|Japan|non)-U\.S|[A-Za-z](\.[A-Za-z])*
ABTITLE = Mr|Mrs|Ms|[M]iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|Sgt|Cpl|Pvt|Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj|Adv|Asst|Assoc|Ens|Insp|Mlle|Mme|Msgr|Sfc
ABCOMP2 = Invt|Elec|Natl|M[ft]g|Dept
ABBREV4 = {ACRO}|{ABTITLE}|vs|Alex|Wm|Jos|Cie|a\.k\.a|cf|TREAS|Ph|{ABCOMP2}
ABBREV2 = {ABBREV4}\.
ACRONYM = ({ACRO})\.
ABBREV3 = (ca|figs?|prop|nos?|art|bldg|prop|pp|op)\.
PHONE = (\([0-9]{2,3}\)[ \u00A0]?|(\+\+?)?([0-9]{2,4}[\- \u00A0])?[0-9]{2,4}[\- \u00A0])[0-9]{3,4}[\- \u00A0]?[0-9]{3,5}|((\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}
FAKEDUCKFEET = <<|>>
LESSTHAN = <|&lt;
GREATERTHAN = >|&gt;
HYPHENS = \-+
LDOTS = \.{3,5}|(\.[ \u00A0]){2,4}\.|[\u0085\u2026]
ATS = @+
UNDS = _+
ASTS = \*+|(\\\*){1,3}
HASHES = #+
FNMARKS = {ATS}|{HASHES}|{UNDS}
INSENTP = [,;:\u3001]
QUOTES = {APOS}|''|[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E\u201F\u2039\u203A\u00AB\u00BB]{1,2}
DBLQUOT = \"|&quot;
TBSPEC = -(RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|pro-|anti-|S(&|&amp;)P-500|S(&|&amp;)Ls|Cap{APOS}n|c{APOS}est
TBSPEC2 = {APOS}[0-9][0-9]
SMILEY = [<>]?[:;=][\-o\*']?[\(\)DPdpO\\{@\|\[\]]
ASIANSMILEY = [\^x=~<>]\.\[\^x=~<>]|[\-\^x=~<>']_[\-\^x=~<>']|\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)|\([\^x=~<>']-[\^x=~<>'`]\)
MISCSYMBOL = [+%&~\^|\\\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00B3\u00B4-\u00BA\u00D7\u00F7\u0387\u05BE\u05C0\u05C3\u05C6\u05F3\u05F4\u0600-\u0603\u0606-\u060A\u060C\u0614\u061B\u061E\u066A\u066D\u0703-\u070D\u07F6\u07F7\u07F8\u0964\u0965\u0E4F\u1FBD\u2016\u2017\u2020-\u2023\u2030-\u2038\u203B\u203E-\u2042\u2044\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF\u2200-\u2BFF\u3012\u30FB\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65\uFF65]
ACRONYM_NEXT = ([A]bout|[A]ccording|[A]dditionally|[A]fter|[A]n|[A]|[A]s|[A]t|[B]ut|[E]arlier|[H]e|[H]er|[H]ere|[H]owever|[I]f|[I]n|[I]t|[L]ast|[M]any|[M]ore|[M]r\.|[M]s\.|[N]ow|[O]nce|[O]ne|[O]ther|[O]ur|[S]he|[S]ince|[S]o|[S]ome|[S]uch|[T]hat|[T]he|[T]heir|[T]hen|[T]here|[T]hese|[T]hey|[T]his|[W]e|[W]hen|[W]hile|[W]hat|[Y]et|[Y]ou|{SGML}){SPACENL}
"""

_MACROS: dict[str, str] = {}
for _line in _LEX_MACROS.strip().splitlines():
    _name, _, _body = _line.partition(" = ")
    _MACROS[_name] = _body

_PREDEFINED = {"[:letter:]": _LETTER_CLASS, "[:digit:]": _DIGIT_CLASS, "[:uppercase:]": _UPPER_CLASS}
_SIMPLE_ESCAPES = {"r": "\\r", "n": "\\n", "t": "\\t", "f": "\\f"}


def _escape_char(ch: str) -> str:
    """One literal character as a regex atom that means only itself (inside or outside a class)."""
    if ch.isascii() and (ch.isalnum() or ch in " _"):
        return ch
    if ch.isascii() and ch.isprintable():
        return "\\" + ch
    return f"\\u{ord(ch):04x}"


def _read_escape(src: str, i: int) -> tuple[str, int]:
    """The character escaped at ``src[i] == '\\'`` and the index after the escape."""
    c = src[i + 1]
    if c == "u":
        return chr(int(src[i + 2 : i + 6], 16)), i + 6
    if c == "x":
        return chr(int(src[i + 2 : i + 4], 16)), i + 4
    return {"r": "\r", "n": "\n", "t": "\t", "f": "\f"}.get(c, c), i + 2


def _read_class(src: str, i: int) -> tuple[str, int]:
    """JFlex class at ``src[i] == '['`` -> Python class, index after it. Case stays as written."""
    if src.startswith("[^]", i):  # JFlex: any character, newlines included
        return "[\\s\\S]", i + 3
    for name, body in _PREDEFINED.items():  # a predefined class on its own
        if src.startswith(name, i):
            return "[" + body + "]", i + len(name)
    j = i + 1
    out = ["["]
    if src[j] == "^":
        out.append("^")
        j += 1
    while src[j] != "]":
        predefined = next((k for k in _PREDEFINED if src.startswith(k, j)), None)
        if predefined is not None:  # a predefined class such as [:letter:] inside a class
            out.append(_PREDEFINED[predefined])
            j += len(predefined)
            continue
        if src[j] == "\\":
            ch, j = _read_escape(src, j)
        else:
            ch, j = src[j], j + 1
        if src[j] == "-" and src[j + 1] != "]":  # a range a-b
            if src[j + 1] == "\\":
                hi, j = _read_escape(src, j + 1)
            else:
                hi, j = src[j + 1], j + 2
            out.append(f"{_escape_char(ch)}-{_escape_char(hi)}")
        else:
            out.append(_escape_char(ch))
    out.append("]")
    return "".join(out), j + 1


def translate(src: str) -> str:
    """A JFlex ``%caseless`` regular expression (macros expanded) -> Python ``re`` syntax."""
    out: list[str] = []
    i = 0
    while i < len(src):
        c = src[i]
        if c == "\\":
            ch, i = _read_escape(src, i)
            out.append(_caseless(ch))
        elif c == "[":
            cls, i = _read_class(src, i)
            out.append(cls)
        elif c == "{":
            end = src.index("}", i)
            body = src[i + 1 : end]
            out.append("{" + body + "}" if body[0].isdigit() else "(?:" + translate(_MACROS[body]) + ")")
            i = end + 1
        elif c == "(":
            out.append("(?:")
            i += 1
        elif c in ")|*+?":
            out.append(c)
            i += 1
        elif c == ".":
            out.append("[^\\n]")
            i += 1
        else:
            out.append(_caseless(c))
            i += 1
    return "".join(out)


def _caseless(ch: str) -> str:
    if ch.isascii() and ch.isalpha():
        return f"[{ch.lower()}{ch.upper()}]"
    return _escape_char(ch)


def split_alternatives(src: str) -> list[str]:
    """The top-level ``|`` alternatives of a JFlex expression (a lone ``{MACRO}`` is opened)."""
    while src.startswith("{") and src.endswith("}") and src.count("{") == 1 and not src[1].isdigit():
        src = _MACROS[src[1:-1]]
    parts, depth, cur, i = [], 0, [], 0
    while i < len(src):
        c = src[i]
        if c == "\\":
            cur.append(src[i : i + 2])
            i += 2
            continue
        if c == "[":
            _, end = _read_class(src, i)
            cur.append(src[i:end])
            i = end
            continue
        if c in "({":
            depth += 1
        elif c in ")}":
            depth -= 1
        elif c == "|" and depth == 0:
            parts.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


class Rule(NamedTuple):
    """One lexer rule: ``pattern`` (JFlex), trailing ``context`` (JFlex or None), ``action``
    (a name :mod:`giqa.bench._ptb_lexer` knows), ``split``: try each top-level alternative
    of ``pattern`` as its own candidate (longest match across them)."""

    pattern: str
    context: Optional[str]
    action: str
    split: bool = False


#: PTBLexer.flex's rules (YyTraditionalTreebank3 state, the default), in the file's order.
RULES: tuple[Rule, ...] = (
    Rule(r"c[+][+]", None, "text"),
    Rule(r"(c|f)#", None, "text"),
    Rule(r"cannot", None, "keep3"),
    Rule(r"'twas", None, "keep2"),
    Rule(r"'tis", None, "keep2"),
    Rule(r"gonna|gotta|lemme|gimme|wanna", None, "keep3"),
    Rule(r"{SGML}", None, "nbsp"),
    Rule(r"{SPMDASH}", None, "mdash"),
    Rule(r"{SPAMP}", None, "amp"),
    Rule(r"{SPPUNC}", None, "text"),
    Rule(r"{WORD}", r"{REDAUX}", "soft"),
    Rule(r"{SWORD}", r"{SREDAUX}", "soft"),
    Rule(r"{WORD}", None, "soft"),
    Rule(r"{APOWORD}", None, "text", split=True),
    Rule(r"{APOWORD2}", r"[:letter:]", "text"),
    Rule(r"{FULLURL}", None, "text"),
    Rule(r"{LIKELYURL}", None, "text", split=True),
    Rule(r"{EMAIL}", None, "text"),
    Rule(r"{TWITTER}", None, "text", split=True),
    Rule(r"{REDAUX}", r"[^A-Za-z]", "close_quote"),
    Rule(r"{SREDAUX}", r"[^A-Za-z]", "close_quote"),
    Rule(r"{DATE}", None, "text"),
    Rule(r"{NUMBER}", None, "soft"),
    Rule(r"{SUBSUPNUM}", None, "text"),
    Rule(r"{FRAC}", None, "nbsp"),
    Rule(r"{FRAC2}", None, "fraction"),
    Rule(r"{TBSPEC}", None, "amp", split=True),
    Rule(r"{THING3}", None, "text"),
    Rule(r"{DOLSIGN}", None, "text"),
    Rule(r"{DOLSIGN2}", None, "currency"),
    Rule(r"{ACRONYM}", r"{SPACENLS}{ACRONYM_NEXT}", "acronym"),
    Rule(r"{ABBREV3}", r"{SPACENL}?[:digit:]", "text"),
    Rule(r"(pt[eyEY]|co)\.", r"{SPACE}(ltd|lim)", "text"),
    Rule(r"{ABBREV1}", r"{SENTEND}", "keep_then_period"),
    Rule(r"{ABBREV1}", r"[^][^]", "text"),
    Rule(r"{ABBREV1}", None, "keep_then_period"),
    Rule(r"{ABBREV2}", None, "text"),
    Rule(r"{ABBREV4}", r"{SPACE}", "text"),
    Rule(r"{ACRO}", r"{SPACENL}", "text"),
    Rule(r"{TBSPEC2}", r"{SPACENL}", "text"),
    Rule(r"{FILENAME}", r"({SPACENL}|[.?!,])", "text"),
    Rule(r"{WORD}\.", r"{INSENTP}", "soft"),
    Rule(r"{PHONE}", None, "phone", split=True),
    Rule(r"{DBLQUOT}", r"[A-Za-z0-9$]", "open_quote"),
    Rule(r"{DBLQUOT}", None, "close_quote"),
    Rule(r"\x7f", None, "skip"),
    Rule(r"{LESSTHAN}", None, "lt"),
    Rule(r"{GREATERTHAN}", None, "gt"),
    Rule(r"{SMILEY}", r"[^A-Za-z0-9]", "parens"),
    Rule(r"{ASIANSMILEY}", None, "parens", split=True),
    Rule(r"\{", None, "-LCB-"),
    Rule(r"\}", None, "-RCB-"),
    Rule(r"\[", None, "-LSB-"),
    Rule(r"\]", None, "-RSB-"),
    Rule(r"\(", None, "-LRB-"),
    Rule(r"\)", None, "-RRB-"),
    Rule(r"{HYPHENS}", None, "hyphens"),
    Rule(r"{LDOTS}", None, "ellipsis", split=True),
    Rule(r"{FNMARKS}", None, "text", split=True),
    Rule(r"{ASTS}", None, "text", split=True),
    Rule(r"{INSENTP}", None, "text"),
    Rule(r"[?!]+", None, "text"),
    Rule("[.\u00a1\u00bf\\u037E\\u0589\\u061F\\u06D4\\u0700-\\u0702\\u07FA\\u3002]", None, "text"),
    Rule(r"=", None, "text"),
    Rule(r"\/", None, "text"),
    Rule(r"{HTHING}\.", r"{INSENTP}", "soft"),
    Rule(r"{HTHING}", None, "soft"),
    Rule(r"{THING}\.", r"{INSENTP}", "text"),
    Rule(r"{THING}", None, "text"),
    Rule(r"{THINGA}\.", r"{INSENTP}", "amp"),
    Rule(r"{THINGA}", None, "amp"),
    Rule(r"'", r"[A-Za-z][^ \t\n\r\u00A0]", "open_quote"),
    Rule(r"{REDAUX}", None, "close_quote"),
    Rule(r"{SREDAUX}", None, "close_quote"),
    Rule(r"{QUOTES}", None, "close_quote", split=True),
    Rule(r"{FAKEDUCKFEET}", None, "text", split=True),
    Rule(r"{MISCSYMBOL}", None, "text"),
    Rule(r"\u0000|{SPACES}|[\u200B\u200E-\u200F\uFEFF]", None, "skip", split=True),
    Rule(r"{NEWLINE}", None, "newline", split=True),
    Rule(r"&nbsp;", None, "skip"),
)


def compile_rule(pattern: str, context: Optional[str]) -> re.Pattern:
    """``pattern`` then, zero-width, the trailing ``context`` captured as group 1."""
    py = "(?:" + translate(pattern) + ")"
    if context is not None:
        py += "(?=(" + translate(context) + "))"
    return re.compile(py)
