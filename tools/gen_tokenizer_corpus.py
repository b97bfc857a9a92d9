#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer_corpus.jsonl: one JSON string per line (so lines can hold
newlines, tabs and control characters), >= 2,000 texts that stress tokenizers: English prose and
code, Japanese (kanji, kana, full-width), Chinese, Korean, Arabic, Hindi, emoji and ZWJ sequences,
accents and combining marks, numbers and long digit runs, whitespace runs, control characters,
very long words, and special-token strings inside text. Deterministic (seeded).

Usage: python3 tools/gen_tokenizer_corpus.py [OUT]
"""
import csv
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests/fixtures/tokenizer_corpus.jsonl")
SHARED = os.path.join(ROOT, "..", "shared", "data")
rng = random.Random(1234)
lines = []

# --- English prose: banking77 questions (real user text) ---
bank = os.path.join(SHARED, "banking77", "train.csv")
if os.path.exists(bank):
    with open(bank, newline="", encoding="utf-8") as f:
        rows = [r[0] for r in csv.reader(f)][1:]
    rng.shuffle(rows)
    lines += rows[:400]

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It's a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
    "Don't you think we'd've been there by now? I'm sure they'll say it's fine; you're right, we've time.",
    "Dr. Smith's e-mail (smith@example.com) said: \"Call me at 555-0199 before 5:30 p.m.!\"",
    "Mr. O'Neil paid $1,234.56 for 3 items -- that's 45% off the list price of $2,245.00.",
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.",
    "UPPERCASE WORDS, MiXeD CaSe, camelCaseIdentifiers and snake_case_names all appear in text.",
    "Hyphenated-words, en–dashes, em—dashes, ellipses… and “curly quotes” are common in prose.",
    "See https://huggingface.co/docs/tokenizers/index?q=bpe&lang=en#section-2 for details.",
]
lines += PROSE

# --- code: lines of Python and C ---
code_src = []
for name in ["json/encoder.py", "textwrap.py", "string.py", "base64.py"]:
    p = os.path.join("/usr/lib/python3.11", name)
    if os.path.exists(p):
        with open(p, encoding="utf-8") as f:
            code_src += [l.rstrip("\n") for l in f if l.strip()]
C_CODE = [
    "int main(int argc, char **argv) { return argc > 1 ? atoi(argv[1]) : 0; }",
    "for (size_t i = 0; i < n; i++) sum += a[i] * b[i];\t// dot product",
    "#include <stdio.h>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\n",
    "    if (x->next != NULL && x->next->val >= 0x7fffffff) { x = x->next; }",
    "def f(x):\n    return [y**2 for y in range(x) if y % 2 == 0]\n",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    "const re = /^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)@example\\.com$/i;",
    "<div class=\"row\"><span id='x'>&lt;tag&gt; &amp; &#x41;</span></div>",
]
rng.shuffle(code_src)
lines += code_src[:250] + C_CODE

# --- multilingual sentences ---
JA = ["日本語のテキストを正しくトークン化できるか確認します。", "東京は日本の首都であり、世界最大の都市圏の一つです。",
      "ひらがなとカタカナ、そして漢字が混ざった文章です。", "ＡＢＣ１２３　全角英数字と全角スペース！？",
      "ｶﾀｶﾅの半角文字もテストします。", "吾輩は猫である。名前はまだ無い。", "「こんにちは」と彼は言った。",
      "今日は2024年3月15日（金）です。", "機械学習モデルの微調整（ファインチューニング）を行う。", "ｱｲｳｴｵ・ヴァイオリン・ー〜"]
ZH = ["我们今天去公园散步，天气非常好。", "机器学习是人工智能的一个分支。", "繁體中文與简体中文並存。",
      "他说：“你好，世界！”", "北京大学成立于1898年。"]
KO = ["안녕하세요, 만나서 반갑습니다.", "한국어 형태소 분석은 어렵습니다.", "서울특별시 강남구 테헤란로 123", "ㄱㄴㄷㄹ ㅏㅑㅓㅕ 자모"]
AR = ["مرحبا بالعالم، كيف حالك اليوم؟", "اللُّغَةُ العَرَبِيَّةُ جَمِيلَةٌ", "الرقم ١٢٣٤٥٦٧٨٩٠ بالأرقام العربية", "كتب محمد رسالة إلى صديقه."]
HI = ["नमस्ते दुनिया, आप कैसे हैं?", "हिन्दी भारत की राजभाषा है।", "क्षत्रिय ज्ञान श्री द्वार", "संख्या १२३४५६७८९०"]
OTHER = ["Привет, мир! Как дела?", "Γειά σου Κόσμε, ΣΟΦΙΑ σοφία σοφίας", "שלום עולם", "สวัสดีชาวโลก",
         "Xin chào thế giới, tiếng Việt có dấu", "İstanbul'da ılık bir gün; IİıI", "Straße, Maß, ß and ẞ", "ǅemal ǈubljana ǋ"]
multi = JA + ZH + KO + AR + HI + OTHER
lines += multi
for _ in range(250):
    k = rng.randint(1, 3)
    parts = [rng.choice(multi + PROSE) for _ in range(k)]
    lines.append(rng.choice([" ", "", "\n", "  ", "\t"]).join(parts))

# --- random characters from scripts ---
RANGES = {
    "kanji": (0x4E00, 0x9FFF), "hiragana": (0x3041, 0x3096), "katakana": (0x30A1, 0x30FA), "fullwidth": (0xFF01, 0xFF5E),
    "halfkana": (0xFF66, 0xFF9D), "hangul": (0xAC00, 0xD7A3), "arabic": (0x0621, 0x064A), "devanagari": (0x0905, 0x0939),
    "cjkext": (0x20000, 0x2A6DF), "latin-ext": (0x0100, 0x024F), "greek": (0x0391, 0x03C9), "cyrillic": (0x0410, 0x044F),
}
for name, (a, b) in RANGES.items():
    for _ in range(30):
        n = rng.randint(1, 40)
        s = "".join(chr(rng.randint(a, b)) for _ in range(n))
        if rng.random() < 0.5:
            s = s[: n // 2] + " " + s[n // 2:]
        lines.append(s)

# --- emoji, ZWJ sequences, skin tones, flags, variation selectors ---
EMOJI = ["😀", "🤖", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇺🇸", "❤️", "🧑🏿‍💻", "👩‍❤️‍💋‍👨", "🐱‍👤", "☺︎", "1️⃣", "🫠", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]
for _ in range(150):
    n = rng.randint(1, 8)
    s = ""
    for _ in range(n):
        s += rng.choice(EMOJI) + rng.choice(["", " ", "", "word", "。", "!"])
    lines.append(s)

# --- accents and combining marks ---
ACC = ["café", "cafe\u0301", "naïve", "nai\u0308ve", "Ångström", "A\u030angstro\u0308m", "résumé", "Zürich",
       "e\u0301\u0302\u0303\u0304", "o\u0336v\u0336e\u0336r\u0336", "Z\u0351\u0353a\u0352l\u0357g\u0354o\u0358",
       "ﬁ ﬂ ﬃ ligatures", "½ ¼ ² ³ ™ ℃ Ⅻ ① ㈱", "Å Å Å (three forms)", "한글 vs 한글 (jamo)"]
for _ in range(150):
    n = rng.randint(1, 6)
    lines.append(" ".join(rng.choice(ACC) for _ in range(n)))

# --- numbers ---
for _ in range(120):
    kind = rng.randint(0, 5)
    if kind == 0:
        s = str(rng.randint(0, 10 ** rng.randint(1, 60)))
    elif kind == 1:
        s = f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}"
    elif kind == 2:
        s = f"{rng.randint(0, 10**9):,}"
    elif kind == 3:
        s = "".join(rng.choice("0123456789") for _ in range(rng.randint(50, 300)))
    elif kind == 4:
        s = f"Version {rng.randint(0,9)}.{rng.randint(0,99)}.{rng.randint(0,999)} released {rng.randint(1990,2030)}-0{rng.randint(1,9)}-1{rng.randint(0,9)}"
    else:
        s = " ".join(str(rng.randint(0, 999999)) for _ in range(rng.randint(2, 12)))
    lines.append(s)

# --- whitespace runs ---
WS = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \t \n", "\u00a0", "\u3000", "\u2009", "\u2003", "\u202f", "\u200b", "\u2028"]
for _ in range(150):
    n = rng.randint(1, 6)
    s = rng.choice(WS) if rng.random() < 0.5 else ""
    for _ in range(n):
        s += rng.choice(["word", "hello", "日本", "x", "42", "!", "a.b"]) + "".join(rng.choice(WS) for _ in range(rng.randint(0, 4)))
    lines.append(s)
lines += [" ", "  ", "\t", "\n", "\n\n\n", " \n ", "   leading", "trailing   ", "\t\ttabs\t\t", "a" + " " * 40 + "b"]

# --- control characters ---
for _ in range(100):
    n = rng.randint(1, 8)
    s = ""
    for _ in range(n):
        c = rng.choice([chr(rng.randint(0, 31)), "\x7f", "\x85", "\u200b", "\u200d", "\ufeff", "\u00ad", "\u2060",
                        "\ufffd", "\ue000", "\U000f0000", "\u0378"])
        s += c + rng.choice(["", "abc", " ", "ü", "字"])
    lines.append(s)

# --- very long words ---
for _ in range(60):
    kind = rng.randint(0, 4)
    if kind == 0:
        s = "a" * rng.randint(100, 1200)
    elif kind == 1:
        s = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(80, 400)))
    elif kind == 2:
        s = "Pneumonoultramicroscopicsilicovolcanoconiosis" * rng.randint(2, 6)
    elif kind == 3:
        s = "".join(rng.choice("日本語漢字かなカナ") for _ in range(rng.randint(60, 200)))
    else:
        s = "https://example.com/" + "/".join("".join(rng.choice("abcxyz0123-_") for _ in range(12)) for _ in range(10))
    lines.append(s)

# --- special-token strings inside text ---
SPECIAL = ["<s>", "</s>", "<unk>", "<pad>", "[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "<|endoftext|>", "<mask>",
           "<0x41>", "▁", "Ġ", "##ing", "<|im_start|>", "[cls]"]
for _ in range(200):
    n = rng.randint(1, 5)
    s = ""
    for _ in range(n):
        s += rng.choice(["", " ", "  ", "word", "Hello ", " there", "日本", "\n"]) + rng.choice(SPECIAL)
    s += rng.choice(["", " end", "x", " "])
    lines.append(s)

# --- random valid code points from all planes ---
for _ in range(100):
    s = ""
    for _ in range(rng.randint(1, 20)):
        while True:
            cp = rng.choice([rng.randint(0x20, 0x2FF), rng.randint(0x300, 0xFFFF), rng.randint(0x10000, 0x10FFFF)])
            if not (0xD800 <= cp <= 0xDFFF):
                break
        s += chr(cp)
    lines.append(s)

# --- mixed everything ---
pool = list(lines)
while len(lines) < 2200:
    lines.append(" ".join(rng.choice(pool)[:200] for _ in range(rng.randint(2, 4))))

lines.append("")  # the empty text
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w", encoding="utf-8") as f:
    for s in lines:
        f.write(json.dumps(s, ensure_ascii=False) + "\n")
print(f"{OUT}: {len(lines)} lines, {os.path.getsize(OUT)} bytes")
