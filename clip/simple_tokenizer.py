"""CLIP's byte-level BPE tokenizer (49,408 tokens), written from the published format.

A text becomes token ids in four steps:
1. clean: a subset of ftfy's `fix_text` (see `fix_text`), HTML entities unescaped twice, runs of
   whitespace collapsed to one space, lower-cased;
2. split into words: English contractions ('s 't 're 've 'm 'll 'd), runs of letters, single
   digits/numerals, runs of anything else; spaces separate words. As in open_clip (and unlike
   OpenAI's original), a literal "<|endoftext|>" in the text is ordinary text, not a control token;
3. each word's UTF-8 bytes are spelled with one printable character per byte and the last
   character is marked as word-final ("</w>");
4. merge adjacent symbols by the ranked merge list of the vocabulary file until no ranked pair
   is left; every resulting symbol is one vocabulary entry.

The vocabulary file bpe_simple_vocab_16e6.txt.gz (next to this module) is OpenAI's (MIT).
"""

import functools
import gzip
import html
import os
import re
import unicodedata

DEFAULT_BPE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpe_simple_vocab_16e6.txt.gz")

START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
_WORD_END = "</w>"
# The vocabulary: 256 byte symbols, the same 256 as word-final symbols, the first
# _NUM_MERGES merges of the file, then the two special tokens: 512 + 48,894 + 2 = 49,408.
_NUM_MERGES = 49152 - 256 - 2

# --- The part of ftfy's fix_text that can be reproduced without ftfy -------------------------
# ftfy is not a dependency. Reproduced below (checked against ftfy in tests/test_clip_tokenizer.py):
# ANSI terminal escapes removed, C1 controls read as Windows-1252, Latin ligatures split,
# fullwidth/halfwidth forms normalised, curly quotes straightened, line breaks unified, lone
# surrogates replaced, invisible control characters removed, NFC. Not reproduced: mojibake repair (e.g. "cafÃ©"),
# and ftfy's own extra HTML unescaping (upper-case entities such as "&EACUTE;", and a third
# round of unescaping when the text contains no "<").
_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LIGATURES = str.maketrans(
    {
        "Ĳ": "IJ",
        "ĳ": "ij",
        "ŉ": "'n",
        "Ǆ": "DŽ",
        "ǅ": "Dž",
        "ǆ": "dž",
        "Ǉ": "LJ",
        "ǈ": "Lj",
        "ǉ": "lj",
        "Ǌ": "NJ",
        "ǋ": "Nj",
        "ǌ": "nj",
        "Ǳ": "DZ",
        "ǲ": "Dz",
        "ǳ": "dz",
        "ﬀ": "ff",
        "ﬁ": "fi",
        "ﬂ": "fl",
        "ﬃ": "ffi",
        "ﬄ": "ffl",
        "ﬅ": "ſt",
        "ﬆ": "st",
    }
)
_CURLY_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u02bc": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
    }
)
# Fullwidth and halfwidth forms (U+FF01..U+FFEE) and the ideographic space take their NFKC form.
_WIDTH_FORMS = re.compile("[\u3000\uff01-\uffee]")
# C0 controls other than tab, newlines, form feed (whitespace clean-up handles those), DEL,
# deprecated format characters, the byte-order mark and interlinear annotation characters.
_INVISIBLE_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]")
_C1_CONTROLS = re.compile("[\x80-\x9f]")
_LINE_BREAKS = re.compile("\r\n?|[\u2028\u2029]")


def _c1_as_windows_1252(match):
    """A C1 control character read as the Windows-1252 byte it most likely was ('\\x85' -> '…')."""
    try:
        return bytes([ord(match.group())]).decode("cp1252")
    except UnicodeDecodeError:  # the five bytes Windows-1252 leaves undefined stay as they are
        return match.group()


def _join_surrogates(text):
    """Surrogate pairs become the character they encode; lone surrogates become U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def fix_text(text):
    """The reproducible subset of ftfy.fix_text (see the comment above)."""
    text = _TERMINAL_ESCAPE.sub("", text)
    text = _C1_CONTROLS.sub(_c1_as_windows_1252, text)
    text = text.translate(_LIGATURES)
    text = _WIDTH_FORMS.sub(lambda match: unicodedata.normalize("NFKC", match.group()), text)
    text = text.translate(_CURLY_QUOTES)
    text = _LINE_BREAKS.sub("\n", text)
    text = _join_surrogates(text)
    text = _INVISIBLE_CONTROLS.sub("", text)
    return unicodedata.normalize("NFC", text)


def basic_clean(text):
    """fix_text, then HTML entities unescaped twice (as CLIP does: "&amp;amp;" -> "&"), stripped."""
    return html.unescape(html.unescape(fix_text(text))).strip()


def whitespace_clean(text):
    """Every run of whitespace (any Unicode space, tab or newline) becomes one space."""
    return " ".join(text.split())


# --- Splitting a cleaned text into words -----------------------------------------------------
def _kind(char):
    """'letter' (Unicode L*), 'number' (N*), 'space' or 'other' (marks, punctuation, symbols...)."""
    category = unicodedata.category(char)[0]
    if category == "L":
        return "letter"
    if category == "N":
        return "number"
    return "space" if char.isspace() else "other"


def split_words(text):
    """Split cleaned, lower-cased text into the words that BPE encodes separately.

    At each position the first rule that applies wins: a contraction, a run of
    letters, ONE number character, a run of characters that are neither letters, numbers nor
    spaces (a run may contain apostrophes: "!'s" -> "!'", "s"). Spaces only separate words.
    """
    words = []
    start = 0
    while start < len(text):
        kind = _kind(text[start])
        contraction = next((token for token in _CONTRACTIONS if text.startswith(token, start)), None)
        if contraction is not None:
            end = start + len(contraction)
        elif kind == "space":
            start += 1
            continue
        elif kind == "number":
            end = start + 1
        else:  # letters and "other" characters form maximal runs of their kind
            end = start + 1
            while end < len(text) and _kind(text[end]) == kind:
                end += 1
        words.append(text[start:end])
        start = end
    return words


# --- Byte-level BPE ------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def byte_symbols():
    """Byte value -> the printable character that spells it in the vocabulary (256 entries).

    Printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') spell themselves; the other 68 bytes,
    in increasing order, take the characters U+0100, U+0101, ... The dict's order (printable
    bytes first) is the order of the first 256 vocabulary entries.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = {byte: chr(byte) for byte in printable}
    others = [byte for byte in range(256) if byte not in symbols]
    symbols.update({byte: chr(256 + index) for index, byte in enumerate(others)})
    return symbols


def read_merges(bpe_path):
    """The ranked merges (pairs of symbols) of a vocabulary file: line 1 is a header."""
    with gzip.open(bpe_path, "rt", encoding="utf-8") as file:
        lines = file.read().split("\n")[1 : _NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    malformed = [line for line, merge in zip(lines, merges) if len(merge) != 2]
    if len(merges) != _NUM_MERGES or malformed:
        raise ValueError(
            f"{bpe_path}: expected {_NUM_MERGES} merge lines of two symbols after the "
            f"header, got {len(merges)} lines ({len(malformed)} malformed, e.g. {malformed[:1]})"
        )
    return merges


class SimpleTokenizer:
    """CLIP's tokenizer: `encode(text) -> ids` (no SOS/EOT), `decode(ids) -> text`."""

    def __init__(self, bpe_path=DEFAULT_BPE_PATH):
        merges = read_merges(bpe_path)
        spellings = list(byte_symbols().values())
        vocabulary = [
            *spellings,
            *(symbol + _WORD_END for symbol in spellings),
            *("".join(merge) for merge in merges),
            START_OF_TEXT,
            END_OF_TEXT,
        ]
        self.encoder = {token: index for index, token in enumerate(vocabulary)}
        self.decoder = dict(enumerate(vocabulary))
        self.merge_ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.byte_decoder = {symbol: byte for byte, symbol in byte_symbols().items()}
        self.sot_token_id = self.encoder[START_OF_TEXT]
        self.eot_token_id = self.encoder[END_OF_TEXT]
        self._word_cache = {}

    def bpe(self, word):
        """A word (already spelled in byte symbols) -> its list of vocabulary tokens."""
        if word in self._word_cache:
            return self._word_cache[word]
        symbols = [*word[:-1], word[-1] + _WORD_END]
        while len(symbols) > 1:
            best = min(zip(symbols, symbols[1:]), key=lambda pair: self.merge_ranks.get(pair, float("inf")))
            if best not in self.merge_ranks:
                break
            merged = []
            index = 0
            while index < len(symbols):  # merge every occurrence of `best`, left to right
                if index + 1 < len(symbols) and (symbols[index], symbols[index + 1]) == best:
                    merged.append(symbols[index] + symbols[index + 1])
                    index += 2
                else:
                    merged.append(symbols[index])
                    index += 1
            symbols = merged
        self._word_cache[word] = symbols
        return symbols

    def encode(self, text):
        """text -> list of token ids, without the start/end-of-text tokens."""
        spell = byte_symbols()
        ids = []
        for word in split_words(whitespace_clean(basic_clean(text)).lower()):
            spelled = "".join(spell[byte] for byte in word.encode("utf-8"))
            ids.extend(self.encoder[token] for token in self.bpe(spelled))
        return ids

    def decode(self, ids):
        """Token ids -> text; word ends become spaces, undecodable bytes become U+FFFD."""
        spelled = "".join(self.decoder[int(index)] for index in ids)
        data = bytes(self.byte_decoder[symbol] for symbol in spelled)
        return data.decode("utf-8", errors="replace").replace(_WORD_END, " ")
