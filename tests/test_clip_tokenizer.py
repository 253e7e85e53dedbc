"""clip.tokenize and clip/simple_tokenizer.py against open_clip's tokenizer (test-only reference)."""

import pytest
import torch

import clip
from clip.simple_tokenizer import SimpleTokenizer

open_clip_tokenizer = pytest.importorskip("open_clip.tokenizer")

# Class names of the 15 datasets as the prompt learners see them (underscores replaced by spaces).
DATASET_CLASS_NAMES = [
    # Caltech101
    "accordion",
    "car side",
    "yin yang",
    "Faces",
    "Motorbikes",
    "dalmatian",
    "wild cat",
    # OxfordPets
    "Abyssinian",
    "american bulldog",
    "great pyrenees",
    "Staffordshire Bull Terrier",
    "yorkshire terrier",
    # StanfordCars
    "2012 Audi TTS Coupe",
    "AM General Hummer SUV 2000",
    "Mercedes-Benz S-Class Sedan 2012",
    "Ram C/V Cargo Van Minivan 2012",
    "smart fortwo Convertible 2012",
    "Aston Martin V8 Vantage Coupe 2012",
    # Flowers102
    "pink primrose",
    "hard-leaved pocket orchid",
    "canterbury bells",
    "bird of paradise",
    "bolero deep blue",
    "black-eyed susan",
    "sweet william",
    "love in the mist",
    # Food101
    "apple pie",
    "baby back ribs",
    "crème brûlée",
    "eggs benedict",
    "huevos rancheros",
    "pho",
    "takoyaki",
    # FGVCAircraft
    "707-320",
    "A300B4",
    "Cessna 172",
    "F-16A/B",
    "DHC-1",
    "Tu-134",
    "Yak-42",
    "MD-11",
    "BAE 146-200",
    "DC-10",
    "Il-76",
    "Boeing 717",
    "F/A-18",
    "Spitfire",
    "Gulfstream IV",
    # SUN397
    "abbey",
    "airplane cabin",
    "outdoor church",
    "indoor apse",
    "bamboo forest",
    "outdoor swimming pool",
    "vehicle dinette",
    "exterior balcony",
    "indoor general store",
    # DTD
    "banded",
    "polka-dotted",
    "zigzagged",
    "crosshatched",
    "honeycombed",
    "stratified",
    # EuroSAT (CoOp's renamed classes)
    "Annual Crop Land",
    "Herbaceous Vegetation Land",
    "Highway or Road",
    "Permanent Crop Land",
    "Sea or Lake",
    "Residential Buildings",
    # UCF101
    "Apply Eye Makeup",
    "Apply Lipstick",
    "Blow Dry Hair",
    "Handstand Pushups",
    "Jumping Jack",
    "Playing Daf",
    "Yo Yo",
    "Skijet",
    "Pommel Horse",
    "Uneven Bars",
    # ImageNet and its variants (CLIP's cleaned names)
    "great white shark",
    "tench",
    "jack-o'-lantern",
    "yellow lady's slipper",
    "Geoffroy's spider monkey",
    "T-shirt",
    "CD player",
    "Granny Smith apple",
    "French horn",
    "three-toed sloth",
    "St. Bernard",
    "carbonara",
    "toilet paper",
    "poke bonnet",
    "ski mask",
]

EDGE_CASES = [
    "",  # only start and end of text
    "a photo of a {}, a type of pet.",
    "X X X X great white shark.",
    # unicode: accents, combining marks (NFC), CJK, Indic marks, emoji, numerals of other scripts
    "naïve café",
    "Crème brûle\u0301e",
    "東京タワー",
    "हिन्दी",
    "emoji 😀🐶",
    "x² ½ Ⅻ ٣ 42",
    "ﬁsh ﬂower Ĳssel",
    "“curly” ‘quotes’",
    "ＦＵＬＬＷＩＤＴＨ １２３",
    "ｶﾞﾝﾀﾞﾑ",
    # mis-decoded text (UTF-8 read as Windows-1252 / Latin-1), repaired by ftfy
    "Ã©tÃ©",
    "itâ€™s the dogâ€™s bowl",
    "Ã¼ber cafÃ© naÃ¯ve",
    "â€œquotedâ€\x9d",
    # other scripts and symbols
    "Ελληνικά Кириллица עִבְרִית العربية",
    "北京烤鸭 김치찌개 ラーメン",
    "flags 🇯🇵 family 👨‍👩‍👧 skin 👍🏽",
    # HTML entities (CLIP unescapes twice; ftfy's own unescaping included)
    "&EACUTE;t&eacute; &Uuml;ber",
    "&lt;not a tag&gt; &amp;lt;",
    "fish &amp; chips",
    "R&amp;amp;D",
    "caf&eacute; &lt;b&gt;",
    "&#39;quoted&#39;",
    "a&nbsp;b",
    # extra and unusual spaces, line breaks, controls
    "  extra   spaces\t\tand\nnew lines  ",
    "non\u00a0breaking\u2009thin\u3000ideographic",
    "a\r\nb\u2028c",
    "zero\u200bwidth",
    "bom\ufeff and nul\x00",
    "\x1b[31mred\x1b[0m",
    # contractions and punctuation runs
    "it's they're we've I'M you'll he'd can't",
    "!'s ''quoted'' ...--- ???",
    "O'Neil's",
]


def open_clip_ids(texts, context_length=77):
    return open_clip_tokenizer.tokenize(texts, context_length=context_length)


def test_ids_match_open_clip_for_dataset_class_names_and_templates():
    sentences = DATASET_CLASS_NAMES + [f"a photo of a {name}." for name in DATASET_CLASS_NAMES]
    ids = clip.tokenize(sentences)
    assert ids.dtype == torch.int64 and ids.shape == (len(sentences), 77)
    assert torch.equal(ids, open_clip_ids(sentences))


def test_ids_match_open_clip_for_all_imagenet_class_names():
    names = list(pytest.importorskip("open_clip.zero_shot_metadata").IMAGENET_CLASSNAMES)
    assert torch.equal(clip.tokenize(names), open_clip_ids(names))


@pytest.mark.parametrize("text", EDGE_CASES)
def test_ids_match_open_clip_for_unicode_entities_and_spaces(text):
    assert torch.equal(clip.tokenize(text), open_clip_ids(text))


def test_start_and_end_of_text_and_padding():
    ids = clip.tokenize(["a photo of a cat.", ""])
    sos, eot = 49406, 49407
    assert ids[0, 0] == sos and ids[1, 0] == sos and ids[1, 1] == eot and ids[1, 2:].eq(0).all()
    end = int(ids[0].argmax())  # EOT has the largest id: this is how the encoder finds it
    assert ids[0, end] == eot and ids[0, end + 1 :].eq(0).all() and end == 7


def test_vocabulary_size_and_special_ids():
    tokenizer = SimpleTokenizer()
    assert len(tokenizer.encoder) == 49408
    assert (tokenizer.sot_token_id, tokenizer.eot_token_id) == (49406, 49407)


def test_too_long_text_raises_naming_text_and_length():
    fits = " ".join(["cat"] * 75)  # 75 tokens + start + end = 77
    assert clip.tokenize(fits)[0, 76] == 49407
    too_long = " ".join(["cat"] * 76)
    for error_type in (ValueError, RuntimeError):  # RuntimeError as OpenAI's tokenize raises
        with pytest.raises(error_type, match=r"'cat cat .*' is 78 tokens long .*context_length=77.*truncate=True"):
            clip.tokenize(too_long)


def test_truncation_keeps_end_of_text_last_as_open_clip():
    long_texts = [" ".join(["cat"] * 100), "a photo of a " + "very " * 80 + "large dog."]
    ids = clip.tokenize(long_texts, truncate=True)
    assert ids.shape == (2, 77) and ids[:, -1].eq(49407).all()
    assert torch.equal(ids, open_clip_ids(long_texts))
    short = clip.tokenize(["cat"] * 2, context_length=4, truncate=True)
    assert short.tolist() == [[49406, 2368, 49407, 0]] * 2


def test_context_length_argument():
    ids = clip.tokenize("a photo of a cat.", context_length=16)
    assert ids.shape == (1, 16) and torch.equal(ids, open_clip_ids("a photo of a cat.", context_length=16))


def test_decode_inverts_encode_up_to_cleaning():
    tokenizer = SimpleTokenizer()
    assert (
        tokenizer.decode(tokenizer.encode("A Photo of  the 2012 Audi TTS Coupe, naïve 😀!"))
        == "a photo of the 2 0 1 2 audi tts coupe , naïve 😀! "
    )


def test_literal_special_tokens_are_the_control_tokens_as_in_openai_clip():
    # OpenAI's tokenizer matches "<|startoftext|>" / "<|endoftext|>" as its control tokens
    # (open_clip renamed its own and reads these as text).
    sos, eot = 49406, 49407
    ids = clip.tokenize("a dog<|endoftext|> and <|startoftext|>")[0]
    assert ids[:8].tolist() == [sos, 320, 1929, eot, 537, sos, eot, 0]
