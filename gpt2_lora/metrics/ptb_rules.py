"""The token patterns of Stanford CoreNLP 3.4.1's PTBLexer, as Python ``regex`` patterns.

CoreNLP's lexer is a JFlex scanner compiled with ``%caseless``: a literal letter matches either case,
while character classes stay as written (``[A-Z]`` is upper case only). Here ``ci`` spells a literal
caselessly and classes are written out as they are, so each pattern accepts the same strings as the
lexer's. Only the default state is covered (``strictTreebank3`` off), with the options
coco-caption's command line implies (``-preserveLines`` adds ``tokenizeNLs``; PTB3 escaping on).

``RULES`` lists the lexer's rules in its order (the order breaks ties between equally long matches):
``(name, head, trailing_context)``; the trailing context counts towards the match length but is
not part of the token, as in JFlex.
"""

from __future__ import annotations

import regex


def ci(literal: str) -> str:
    """A literal under %caseless: each letter matches its upper and lower case form."""
    out = []
    for ch in literal:
        lower, upper = ch.lower(), ch.upper()
        if lower != upper and len(lower) == len(upper) == 1:
            out.append(f"[{lower}{upper}]")
        else:
            out.append(regex.escape(ch))
    return "".join(out)


def alt(*parts: str) -> str:
    return "(?:" + "|".join(parts) + ")"


def words(*literals: str) -> str:
    return alt(*(ci(w) for w in literals))


# -- characters ----------------------------------------------------------------------------------
SPACE = r"[ \t\u00a0\u2000-\u200a\u3000]"
NEWLINE = r"(?:\r?\n|\r|\u2028|\u2029|\u000b|\u000c|\u0085)"
SPACENL = alt(SPACE, NEWLINE)
DIGIT_CLASS = r"\p{Nd}\u07c0-\u07c9"
DIGIT = f"[{DIGIT_CLASS}]"
# Java letters plus the marks and extra ranges the lexer counts as letters (soft hyphen included)
LETTER_CLASS = (r"\p{L}\u00ad\u0237-\u024f\u02c2-\u02c5\u02d2-\u02df\u02e5-\u02ff\u0300-\u036f"
                r"\u0370-\u037d\u0384\u0385\u03cf\u03f6\u03fc-\u03ff\u0483-\u0487\u04cf\u04f6-\u04ff"
                r"\u0510-\u0525\u055a-\u055f\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7"
                r"\u0615-\u061a\u063b-\u063f\u064b-\u065e\u0670\u06d6-\u06ef\u06fa-\u06ff\u070f\u0711"
                r"\u0730-\u074f\u0750-\u077f\u07a6-\u07b1\u07ca-\u07f5\u07fa\u0900-\u0903\u093c"
                r"\u093e-\u094e\u0951-\u0955\u0962-\u0963\u0981-\u0983\u09bc-\u09c4\u09c7\u09c8"
                r"\u09cb-\u09cd\u09d7\u09e2\u09e3\u0a01-\u0a03\u0a3c\u0a3e-\u0a4f\u0a81-\u0a83"
                r"\u0abc-\u0acf\u0b82\u0bbe-\u0bc2\u0bc6-\u0bc8\u0bca-\u0bcd\u0c01-\u0c03\u0c3e-\u0c56"
                r"\u0d3e-\u0d44\u0d46-\u0d48\u0e30-\u0e3a\u0e47-\u0e4e\u0eb1-\u0ebc\u0ec8-\u0ecd")
SPLET = "&[aeiouAEIOU]" + words("acute", "grave", "uml") + ";"  # &eacute; and friends
LETTER = alt(f"[{LETTER_CLASS}]", SPLET)
LETTER_OR_DIGIT = alt(f"[{LETTER_CLASS}{DIGIT_CLASS}]", SPLET)
JLETTER = r"\p{L}"  # [:letter:] proper (without the lexer's additions)
JLETTER_OR_DIGIT = r"[\p{L}\p{Nd}]"
UPPERCASE = r"\p{Uppercase}"

# -- SGML and entities ---------------------------------------------------------------------------
_NAME = r"[A-Za-z][A-Za-z0-9_:.\-]*"
SGML = (r"<(?:[!?][A-Za-z\-][^>\r\n]*"
        rf"|{_NAME}(?:[ ]+(?:{_NAME}|{_NAME}[ ]*=[ ]*(?:'[^']*'|\"[^\"]*\")))*[ ]*/?"
        rf"|/{_NAME})[ ]*>")
SPMDASH = alt("&" + words("md", "mdash", "ndash") + ";", r"[\u0096\u0097\u2013\u2014\u2015]")
SPAMP = ci("&amp;")
SPPUNC = "&" + alt(words("ht", "tl", "ur", "lr", "qc", "ql", "qr", "odq", "cdq"), "#[0-9]+") + ";"

# -- apostrophes ---------------------------------------------------------------------------------
APOS = alt(r"['\u0092\u2019]", ci("&apos;"))
APOSETC = alt(APOS, r"[`\u0091\u2018\u201b]")
REDAUX = APOS + alt("[msdMSD]", ci("re"), ci("ve"), ci("ll"))
SWORD = r"[A-Za-z\u00ad]*[A-MO-Za-mo-z]\u00ad*"
SREDAUX = ci("n") + APOSETC + ci("t")
APOWORD = alt(
    APOS + ci("n") + APOS + "?",
    "[lLdDjJ]" + APOS,
    ci("dunkin") + APOS, ci("somethin") + APOS, ci("ol") + APOS,
    APOS + ci("em"),
    "[A-HJ-XZn]" + APOSETC + JLETTER + "{2}" + JLETTER + "*",
    APOS + "[2-9]0" + ci("s"),
    APOS + ci("til") + ci("l") + "?",
    JLETTER + "+" + "[aeiouyAEIOUY]" + APOSETC + "[aeiouA-Z]" + JLETTER + "*",
    APOS + ci("cause"),
    ci("cont'd") + r"\.?",
    words("'twas", "nor'easter", "c'mon", "e'er", "s'mores", "ev'ry", "li'l", "nat'l"),
    ci("o") + APOSETC + ci("o"),
)
APOWORD2 = ci("y") + APOS

# -- words, numbers, things ------------------------------------------------------------------------
WORD = f"{LETTER}{LETTER_OR_DIGIT}*(?:[.!?]{LETTER}{LETTER_OR_DIGIT}*)*"
FILENAME_EXT = words("bat", "bmp", "c", "class", "cgi", "cpp", "dll", "doc", "docx", "exe", "gif", "gz",
                     "h", "htm", "html", "jar", "java", "jpeg", "jpg", "mov", "mp3", "pdf", "php", "pl",
                     "png", "ppt", "ps", "py", "sql", "tar", "txt", "wav", "x", "xml", "zip")
FILENAME = f"{LETTER_OR_DIGIT}+(?:[.]{LETTER_OR_DIGIT}+)*[.]{FILENAME_EXT}"
HYPHEN = r"[\-_\u058a\u2010\u2011]"
_THING_PART = f"(?:[dDoOlL]{APOSETC}{JLETTER_OR_DIGIT})?{JLETTER_OR_DIGIT}+"
THING = f"{_THING_PART}(?:{HYPHEN}{_THING_PART})*"
THINGA = rf"[A-Z]+(?:(?:[+&]|{SPAMP})[A-Z]+)+"
THING3 = r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"
DATE = rf"{DIGIT}{{1,2}}[\-/]{DIGIT}{{1,2}}[\-/]{DIGIT}{{2,4}}"
NUM = alt(f"{DIGIT}+", rf"{DIGIT}*(?:[.:,\u00ad\u066b\u066c]{DIGIT}+)+")
NUMBER = rf"[\-+]?{NUM}"
SUBSUPNUM = r"[\u207a\u207b\u208a\u208b]?(?:[\u2070\u00b9\u00b2\u00b3\u2074-\u2079]+|[\u2080-\u2089]+)"
FRAC = rf"(?:{DIGIT}{{1,4}}[\- \u00a0])?{DIGIT}{{1,4}}(?:\\?/|\u2044){DIGIT}{{1,4}}"
FRAC2 = r"[\u00bc\u00bd\u00be\u2153-\u215e]"
DOLSIGN = r"(?:[A-Z]*\$|#)"
DOLSIGN2 = r"[\u00a2\u00a3\u00a4\u00a5\u0080\u20a0\u20ac\u060b\u0e3f\u20a4\uffe0\uffe1\uffe5\uffe6]"

# -- URLs, e-mail, twitter -------------------------------------------------------------------------
FULLURL = ci("http") + ci("s") + r"?://[^ \t\n\f\r\"<>|(){}]+[^ \t\n\f\r\"<>|.!?(){},\-]"
_URL_TAIL = r"(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},\-])?"
# ',-_' below is a range (',' to '_'), as in the lexer's own class
LIKELYURL = (alt(ci("www") + r"\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4}",
                 r"(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+" + words("com", "net", "org", "edu"))
             + _URL_TAIL)
_EMAIL_PART = r"[^ \t\n\f\r\"<>|(){}.\u00a0]+"
EMAIL = (alt(ci("&lt;"), "<") + r"?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00a0{}]*@"
         + rf"(?:{_EMAIL_PART}\.)*{_EMAIL_PART}" + alt(ci("&gt;"), ">") + "?")
TWITTER = alt("@[a-zA-Z_][a-zA-Z_0-9]*", f"#{LETTER}+")

# -- abbreviations ---------------------------------------------------------------------------------
ABMONTH = words("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec")
ABDAYS = words("mon", "tue", "tues", "wed", "thu", "thurs", "fri")
# some states are case-sensitive in their first letter ([A]z): they are also common words
ABSTATE = alt(words("ala", "ariz"), "A" + ci("z"), "A" + ci("rk"), words("calif", "colo", "conn", "ct", "dak"),
              "D" + ci("el"), words("fla", "ga"), "I" + ci("ll"), words("ind", "kan", "kans", "ky"),
              "L" + ci("a"), "M" + ci("ass"), words("md", "mich", "minn"), "M" + ci("iss"),
              words("mo", "mont", "neb", "nev", "okla"), "O" + ci("re"), "P" + ci("a"),
              words("penn", "tenn"), "T" + ci("ex"), words("va", "vt"), "W" + ci("ash"),
              words("wis", "wisc", "wyo"))
ABCOMP = alt(words("inc", "co", "cos", "corp", "ltd", "plc", "rt", "bancorp", "bhd", "assn", "univ", "intl",
                   "sys"), ci("p") + ci("p") + "?" + ci("t") + "[ye]" + ci("s") + "?")
ABNUM = words("tel", "est", "ext", "sq")
ABPTIT = alt(words("jr", "sr", "bros", "ed.d", "ph.d", "blvd", "rd", "esq"))
ABBREV1 = alt(ABMONTH, ABDAYS, ABSTATE, ABCOMP, ABNUM, ABPTIT, words("etc", "al", "seq", "bldg")) + r"\."
_ACRO_SPECIAL = alt(words("canada", "sino", "korean", "eu", "japan", "non") + ci("-u.s"),
                    ci("u.s.-") + words("u.k", "u.s.s.r"))
ACRO = alt(r"[A-Za-z](?:\.[A-Za-z])*", _ACRO_SPECIAL)
ACRO2 = alt(r"[A-Za-z](?:\.[A-Za-z])+", _ACRO_SPECIAL)
ABTITLE = alt(words("mr", "mrs", "ms"), "M" + ci("iss"),
              words("dr", "drs", "prof", "profs", "sen", "sens", "rep", "reps", "atty", "attys", "lt",
                    "col", "gen", "messrs", "gov", "govs", "adm", "rev", "maj", "sgt", "cpl", "pvt", "capt",
                    "st", "ste", "ave", "pres", "lieut", "hon", "brig", "cmdr", "comdr", "pfc", "spc",
                    "supt", "supts", "det", "mt", "ft", "adj", "adv", "asst", "assoc", "ens", "insp",
                    "mlle", "mme", "msgr", "sfc"))
ABCOMP2 = alt(words("invt", "elec", "natl", "dept"), ci("m") + "[ft]" + ci("g"))
ABBREV4 = alt(ABTITLE, words("vs", "alex", "wm", "jos", "cie", "a.k.a", "cf", "treas", "ph"), ACRO, ABCOMP2)
ABBREV2 = ABBREV4 + r"\."
ACRONYM = ACRO + r"\."
ABBREV3 = words("ca", "fig", "figs", "prop", "no", "nos", "art", "bldg", "pp", "op") + r"\."
# After an acronym, these words (case-sensitive first letter) make its period end the sentence.
_SENTENCE_STARTERS = ("About", "According", "Additionally", "After", "An", "A", "As", "At", "But", "Earlier",
                      "He", "Her", "Here", "However", "If", "In", "It", "Last", "Many", "More", "Mr.", "Ms.",
                      "Now", "Once", "One", "Other", "Our", "She", "Since", "So", "Some", "Such", "That",
                      "The", "Their", "Then", "There", "These", "They", "This", "We", "When", "While", "What",
                      "Yet", "You")
ACRONYM_TRAIL = (f"{SPACENL}+"
                 + alt(*(w[0] + ci(w[1:]) for w in _SENTENCE_STARTERS), SGML) + SPACENL)
SENTEND = SPACENL + alt(SPACENL, UPPERCASE, SGML)

# -- punctuation and symbols -----------------------------------------------------------------------
PHONE = alt(
    r"(?:\([0-9]{2,3}\)[ \u00a0]?|(?:\+\+?)?(?:[0-9]{2,4}[\- \u00a0])?[0-9]{2,4}[\- \u00a0])"
    r"[0-9]{3,4}[\- \u00a0]?[0-9]{3,5}",
    r"(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}")
LDOTS = r"(?:\.{3,5}|(?:\.[ \u00a0]){2,4}\.|[\u0085\u2026])"
INSENTP = r"[,;:\u3001]"
QUOTES = alt(APOS, "''", r"[`\u2018\u2019\u201a\u201b\u201c\u201d\u0091\u0092\u0093\u0094\u201e\u201f"
                         r"\u2039\u203a\u00ab\u00bb]{1,2}")
DBLQUOT = alt('"', ci("&quot;"))
TBSPEC = alt("-" + words("rrb", "lrb", "rcb", "lcb", "rsb", "lsb") + "-", ci("c.d.s"), ci("pro-"),
             ci("anti-"), ci("s") + alt("&", ci("&amp;")) + ci("p-500"), ci("s") + alt("&", ci("&amp;")) + ci("ls"),
             ci("cap") + APOS + ci("n"), ci("c") + APOS + ci("est"))
TBSPEC2 = APOS + "[0-9][0-9]"
SMILEY = r"[<>]?[:;=][\-o\*']?[()DPdpO\\{@|\[\]]"
ASIANSMILEY = alt(r"[\^x=~<>]\.\[\^" + ci("x") + r"=~<>\]",  # as written in the lexer: a literal '[^x=~<>]'
                  r"[\-\^x=~<>']_[\-\^x=~<>']",
                  r"\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)",
                  r"\([\^x=~<>']-[\^x=~<>'`]\)")
MISCSYMBOL = (r"[+%&~\^|\\\u00a6\u00a7\u00a8\u00a9\u00ac\u00ae\u00af\u00b0-\u00b3\u00b4-\u00ba\u00d7\u00f7"
              r"\u0387\u05be\u05c0\u05c3\u05c6\u05f3\u05f4\u0600-\u0603\u0606-\u060a\u060c\u0614\u061b"
              r"\u061e\u066a\u066d\u0703-\u070d\u07f6\u07f7\u07f8\u0964\u0965\u0e4f\u1fbd\u2016\u2017"
              r"\u2020-\u2023\u2030-\u2038\u203b\u203e-\u2042\u2044\u207a-\u207f\u208a-\u208e\u2100-\u214f"
              r"\u2190-\u21ff\u2200-\u2bff\u3012\u30fb\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]")

# (name, head, trailing context or None), in the lexer's order
RULES: tuple[tuple[str, str, str | None], ...] = (
    ("c++", ci("c") + r"\+\+", None),
    ("c#", alt(ci("c"), ci("f")) + "#", None),
    ("cannot", ci("cannot"), None),
    ("'twas", ci("'twas"), None),
    ("'tis", ci("'tis"), None),
    ("gonna", words("gonna", "gotta", "lemme", "gimme", "wanna"), None),
    ("sgml", SGML, None),
    ("spmdash", SPMDASH, None),
    ("spamp", SPAMP, None),
    ("sppunc", SPPUNC, None),
    ("word/redaux", WORD, REDAUX),
    ("sword/sredaux", SWORD, SREDAUX),
    ("word", WORD, None),
    ("apoword", APOWORD, None),
    ("apoword2", APOWORD2, JLETTER),
    ("fullurl", FULLURL, None),
    ("likelyurl", LIKELYURL, None),
    ("email", EMAIL, None),
    ("twitter", TWITTER, None),
    ("redaux/nonletter", REDAUX, "[^A-Za-z]"),
    ("sredaux/nonletter", SREDAUX, "[^A-Za-z]"),
    ("date", DATE, None),
    ("number", NUMBER, None),
    ("subsupnum", SUBSUPNUM, None),
    ("frac", FRAC, None),
    ("frac2", FRAC2, None),
    ("tbspec", TBSPEC, None),
    ("thing3", THING3, None),
    ("dolsign", DOLSIGN, None),
    ("dolsign2", DOLSIGN2, None),
    ("acronym/starter", ACRONYM, ACRONYM_TRAIL),
    ("abbrev3/digit", ABBREV3, f"{SPACENL}?{DIGIT}"),
    ("pty./ltd", alt("[pP][tT][eyEY]", ci("co")) + r"\.", SPACE + words("ltd", "lim")),
    ("abbrev1/sentend", ABBREV1, SENTEND),
    ("abbrev1/any2", ABBREV1, r"(?s:..)"),
    ("abbrev1", ABBREV1, None),
    ("abbrev2", ABBREV2, None),
    ("abbrev4/space", ABBREV4, SPACE),
    ("acro/spacenl", ACRO, SPACENL),
    ("tbspec2/spacenl", TBSPEC2, SPACENL),
    ("filename", FILENAME, alt(SPACENL, "[.?!,]")),
    ("word./insentp", WORD + r"\.", INSENTP),
    ("phone", PHONE, None),
    ("dblquot/left", DBLQUOT, "[A-Za-z0-9$]"),
    ("dblquot", DBLQUOT, None),
    ("delete", "\x7f", None),
    ("lessthan", alt("<", ci("&lt;")), None),
    ("greaterthan", alt(">", ci("&gt;")), None),
    ("smiley", SMILEY, "[^A-Za-z0-9]"),
    ("asiansmiley", ASIANSMILEY, None),
    ("{", r"\{", None),
    ("}", r"\}", None),
    ("[", r"\[", None),
    ("]", r"\]", None),
    ("(", r"\(", None),
    (")", r"\)", None),
    ("hyphens", r"-+", None),
    ("ldots", LDOTS, None),
    ("fnmarks", alt("@+", "#+", "_+"), None),
    ("asts", alt(r"\*+", r"(?:\\\*){1,3}"), None),
    ("insentp", INSENTP, None),
    ("?!", r"[?!]+", None),
    ("period", r"[.\u00a1\u00bf\u037e\u0589\u061f\u06d4\u0700-\u0702\u07fa\u3002]", None),
    ("=", "=", None),
    ("/", "/", None),
    ("hthing./insentp", None, INSENTP),  # head filled in below (HTHING needs ACRO2)
    ("hthing", None, None),
    ("thing./insentp", THING + r"\.", INSENTP),
    ("thing", THING, None),
    ("thinga./insentp", THINGA + r"\.", INSENTP),
    ("thinga", THINGA, None),
    ("'/letter", "'", r"[A-Za-z][^ \t\n\r\u00a0]"),
    ("redaux", REDAUX, None),
    ("sredaux", SREDAUX, None),
    ("quotes", QUOTES, None),
    ("fakeduckfeet", alt("<<", ">>"), None),
    ("miscsymbol", MISCSYMBOL, None),
    ("space", alt("\x00", f"{SPACE}+", r"[\u200b\u200e\u200f\ufeff]"), None),
    ("newline", NEWLINE, None),
    ("nbsp", ci("&nbsp;"), None),
    ("untokenizable", r"[^\n]", None),
)

HTHING = rf"[A-Za-z0-9][A-Za-z0-9.,\u00ad]*(?:-(?:[A-Za-z0-9\u00ad]+|{ACRO2}\.))+"
RULES = tuple((name, (HTHING + r"\." if name == "hthing./insentp" else HTHING) if head is None else head, trail)
              for name, head, trail in RULES)
