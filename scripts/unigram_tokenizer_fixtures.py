"""SentencePiece Unigram references for packages/models/test/unigram.test.ts. Trains two small
Unigram models with Debian's python3-sentencepiece on the Amazon and Yelp sentences of the npm
`sentiment` package (its test fixtures; the IMDb ones are held out), in T5's id layout (pad 0,
eos 1, unk 2, no bos) with the nmt_nfkc normaliser, one of them with byte fallback. Each .model is
converted here to a Hugging Face tokenizer.json twice: as transformers' current converter lays
it out (Precompiled charsmap, Strip right, runs of spaces to one "▁", Metaspace prepending "▁")
and (the model without byte fallback) as the t5-small file on the Hub has it (Precompiled, then WhitespaceSplit + Metaspace with
add_prefix_space), both with T5's post-processor appending </s>. The pieces, scores and the
precompiled charsmap are read from the model proto (parsed by hand: Debian ships sentencepiece
without protobuf). Then sentencepiece encodes the held-out sentences and a set of unicode,
digit and whitespace cases; the ids and pieces go to cases.json. Run with /usr/bin/python3 from
the repository root."""
import base64
import glob
import json
import os
import tempfile

import sentencepiece as spm

ROOT = os.path.join(os.path.dirname(__file__), "..")
OUT = os.path.join(ROOT, "packages", "models", "test", "fixtures", "unigram")
SENTIMENT = sorted(glob.glob(os.path.join(ROOT, "node_modules", ".pnpm", "sentiment@*", "node_modules", "sentiment", "test", "fixtures")))[-1]


def varint(buf, i):
    out, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return out, i


def fields(buf):
    """(field number, wire type, value) of a protobuf message; value is bytes for length-delimited fields."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        else:
            raise ValueError(f"wire type {wt}")
        yield num, wt, v


def charsmap(model_bytes):
    """ModelProto.normalizer_spec (field 3).precompiled_charsmap (field 2)."""
    for num, _, v in fields(model_bytes):
        if num == 3:
            for n2, _, v2 in fields(v):
                if n2 == 2:
                    return bytes(v2)
    return b""


def convert(sp, model_bytes, byte_fallback, legacy):
    vocab = [[sp.id_to_piece(i), 0.0 if (sp.is_control(i) or sp.is_unknown(i)) else sp.get_score(i)] for i in range(sp.get_piece_size())]
    cm = base64.b64encode(charsmap(model_bytes)).decode()
    if legacy:
        normalizer = {"type": "Precompiled", "precompiled_charsmap": cm}
        pre = {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, {"type": "Metaspace", "replacement": "▁", "add_prefix_space": True}]}
        decoder = {"type": "Metaspace", "replacement": "▁", "add_prefix_space": True}
    else:
        normalizer = {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": cm},
            {"type": "Strip", "strip_left": False, "strip_right": True},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "▁"},
        ]}
        pre = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
        decoder = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    if byte_fallback:
        decoder = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}, decoder]}
    specials = [(sp.pad_id(), "<pad>"), (sp.eos_id(), "</s>"), (sp.unk_id(), "<unk>")]
    eos = ["</s>", sp.eos_id()]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True} for i, t in specials],
        "normalizer": normalizer,
        "pre_tokenizer": pre,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [eos[1]], "tokens": ["</s>"]}},
        },
        "decoder": decoder,
        "model": {"type": "Unigram", "unk_id": sp.unk_id(), "vocab": vocab, "byte_fallback": byte_fallback},
    }


EXTRA = [
    "", " ", "   ", "hello", "  leading and trailing  ", "many    spaces\tand\ttabs\nand\nnewlines",
    "Numbers: 0 1 12 123 1234 3.14159 -42 1,000,000 2026-12-05", "Fullwidth １２３ ＡＢＣ and ｶﾀｶﾅ", "Ligatures ﬁ ﬂ and ① ² ½",
    "Café naïve résumé façade coöperate", "Ünïcödé: Straße, Ærøskøbing, Łódź, İstanbul", "Καλημέρα κόσμε", "Привет, мир!",
    "日本語のテキスト、漢字とかな。", "中文句子测试", "한국어 문장", "emoji 😀👍🏽 and ❤️ and 🇫🇷", "mixed\u00a0no-break\u3000ideographic space",
    "zero\u200bwidth", "control\u0007bell", "tabs\t\t\tonly", "\n\nnewlines first", "trailing newline\n", "a", "A B C D E F", "x" * 40,
    "The quick brown fox jumps over the lazy dog.", "don't won't can't it's y'all", "e-mail: someone@example.com, url https://example.org/a?b=c",
    "(parens) [brackets] {braces} <angles> \"quotes\" 'single'", "#hashtag @mention $100 50% 3+4=7 a*b/c", "Ellipsis… em—dash en–dash ‘curly’ “quotes”",
]


def main():
    os.makedirs(OUT, exist_ok=True)
    train_text = []
    for name in ["amazon.json", "yelp.json"]:
        with open(os.path.join(SENTIMENT, name)) as f:
            train_text += [r["text"].strip() for r in json.load(f)]
    with open(os.path.join(SENTIMENT, "imdb.json")) as f:
        held_out = [r["text"] for r in json.load(f)][:300]
    corpus = os.path.join(tempfile.mkdtemp(), "train.txt")
    with open(corpus, "w") as f:
        f.write("\n".join(train_text) + "\n")
    cases = {"sentences": held_out + EXTRA, "models": {}}
    tmp = tempfile.mkdtemp()
    for tag, byte_fallback in [("unigram", False), ("unigram-bytes", True)]:
        prefix = os.path.join(tmp, tag)
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=prefix, model_type="unigram", vocab_size=2000 if not byte_fallback else 800, character_coverage=0.9995,
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=byte_fallback, normalization_rule_name="nmt_nfkc",
            num_threads=1, seed_sentencepiece_size=20000, minloglevel=2,
        )
        with open(prefix + ".model", "rb") as f:
            model_bytes = f.read()
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        for legacy in [False, True] if not byte_fallback else [False]:
            with open(os.path.join(OUT, f"{tag}{'-legacy' if legacy else ''}.tokenizer.json"), "w") as f:
                json.dump(convert(sp, model_bytes, byte_fallback, legacy), f, ensure_ascii=False)
        cases["models"][tag] = {
            "ids": [sp.encode(s) for s in cases["sentences"]],
            "pieces": [sp.encode(s, out_type=str) for s in cases["sentences"]],
            "decoded": [sp.decode(sp.encode(s)) for s in cases["sentences"]],
        }
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(cases, f, ensure_ascii=False)
    print({k: sum(len(x) for x in v["ids"]) for k, v in cases["models"].items()}, "tokens over", len(cases["sentences"]), "sentences")


if __name__ == "__main__":
    main()
