"""CLIP's byte-level BPE tokenizer (49,408 tokens), written from the published format.

A text becomes token ids in four steps, as in OpenAI's tokenizer:
1. clean: ftfy.fix_text (mojibake such as "Ã©tÃ©" repaired, ligatures split, fullwidth forms
   and curly quotes normalised, control characters removed, NFC), HTML entities unescaped twice
   ("&amp;amp;" -> "&"), runs of whitespace collapsed to one space, lower-cased;
2. split into words with `regex` (Unicode classes): the special tokens "<|startoftext|>" and
   "<|endoftext|>", English contractions ('s 't 're 've 'm 'll 'd), runs of letters, single
   numerals, runs of anything else; spaces only separate words;
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

import ftfy
import regex

DEFAULT_BPE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpe_simple_vocab_16e6.txt.gz")

START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
_WORD_END = "</w>"
# The vocabulary: 256 byte symbols, the same 256 as word-final symbols, the first
# _NUM_MERGES merges of the file, then the two special tokens: 512 + 48,894 + 2 = 49,408.
_NUM_MERGES = 49152 - 256 - 2

# Alternatives in priority order; IGNORECASE as OpenAI's pattern (the text is lower-cased anyway).
WORD_PATTERN = regex.compile(
    "|".join(
        [
            regex.escape(START_OF_TEXT),
            regex.escape(END_OF_TEXT),
            "'s|'t|'re|'ve|'m|'ll|'d",
            r"\p{L}+",  # a run of letters
            r"\p{N}",  # one numeral
            r"[^\s\p{L}\p{N}]+",  # a run of anything else
        ]
    ),
    regex.IGNORECASE,
)


def basic_clean(text):
    """ftfy.fix_text, then HTML entities unescaped twice (as CLIP does: "&amp;amp;" -> "&"), stripped."""
    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def whitespace_clean(text):
    """Every run of whitespace (any Unicode space, tab or newline) becomes one space; stripped."""
    return regex.sub(r"\s+", " ", text).strip()


def split_words(text):
    """Cleaned, lower-cased text -> the words that BPE encodes separately (see WORD_PATTERN)."""
    return WORD_PATTERN.findall(text)


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
    """CLIP's tokenizer: `encode(text) -> ids` (no SOS/EOT), `decode(ids) -> text`, with the
    attributes of OpenAI's (encoder, decoder, byte_encoder, byte_decoder, bpe_ranks, cache, pat)."""

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
        self.bpe_ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.byte_encoder = byte_symbols()
        self.byte_decoder = {symbol: byte for byte, symbol in byte_symbols().items()}
        self.sot_token_id = self.encoder[START_OF_TEXT]
        self.eot_token_id = self.encoder[END_OF_TEXT]
        self.pat = WORD_PATTERN
        self.cache = {START_OF_TEXT: START_OF_TEXT, END_OF_TEXT: END_OF_TEXT}  # word -> its tokens, space-separated

    def bpe(self, word):
        """A word (spelled in byte symbols, or a special token) -> its vocabulary tokens, separated
        by spaces (as OpenAI's)."""
        if word in self.cache:
            return self.cache[word]
        symbols = [*word[:-1], word[-1] + _WORD_END]
        while len(symbols) > 1:
            best = min(zip(symbols, symbols[1:]), key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if best not in self.bpe_ranks:
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
        self.cache[word] = " ".join(symbols)
        return self.cache[word]

    def encode(self, text):
        """text -> list of token ids, without the start/end-of-text tokens."""
        ids = []
        for word in split_words(whitespace_clean(basic_clean(text)).lower()):
            if word not in (START_OF_TEXT, END_OF_TEXT):  # those are tokens as they are
                word = "".join(self.byte_encoder[byte] for byte in word.encode("utf-8"))
            ids.extend(self.encoder[token] for token in self.bpe(word).split(" "))
        return ids

    def decode(self, ids):
        """Token ids -> text; word ends become spaces, undecodable bytes become U+FFFD."""
        spelled = "".join(self.decoder[int(index)] for index in ids)
        data = bytes(self.byte_decoder[symbol] for symbol in spelled)
        return data.decode("utf-8", errors="replace").replace(_WORD_END, " ")
