"""chrF references for packages/train/test/text-metrics.test.ts, written from sacreBLEU 2's
definition (sacrebleu is not installed here): character n-grams for n = 1..6 of each sentence with
its whitespace removed, a hypothesis' n-grams not counted for an order its reference is too short
to have, statistics summed over the corpus, precision and recall averaged over the orders both
sides have (no epsilon smoothing), then F-beta with beta 2, times 100.

The sentences are the IMDb film reviews of the npm `sentiment` package's test fixtures; each is
the reference of a hypothesis made from it (words dropped, reordered, letters changed, case
changed, another review, empty, one character) so that every branch of the definition is met.
Run with /usr/bin/python3 from the repository root."""
import glob
import json
import os
import random
from collections import Counter

ROOT = os.path.join(os.path.dirname(__file__), "..")
OUT = os.path.join(ROOT, "packages", "train", "test", "fixtures", "chrf.json")
SENTIMENT = sorted(glob.glob(os.path.join(ROOT, "node_modules", ".pnpm", "sentiment@*", "node_modules", "sentiment", "test", "fixtures")))[-1]
ORDER, BETA = 6, 2


def statistics(hyp, ref):
    hyp, ref = "".join(hyp.split()), "".join(ref.split())
    out = []
    for n in range(1, ORDER + 1):
        h = Counter(hyp[i:i + n] for i in range(len(hyp) - n + 1))
        r = Counter(ref[i:i + n] for i in range(len(ref) - n + 1))
        out += [sum(h.values()) if r else 0, sum(r.values()), sum((h & r).values())]
    return out


def score(stats):
    prec = rec = 0.0
    orders = 0
    for i in range(ORDER):
        n_hyp, n_ref, n_match = stats[3 * i:3 * i + 3]
        if n_hyp > 0 and n_ref > 0:
            prec += n_match / n_hyp
            rec += n_match / n_ref
            orders += 1
    if orders == 0:
        return 0.0
    prec, rec = prec / orders, rec / orders
    if prec + rec == 0:
        return 0.0
    f = BETA ** 2
    return 100 * (1 + f) * prec * rec / (f * prec + rec)


def perturb(rng, sentence, others):
    words = sentence.split()
    kind = rng.randrange(7)
    if kind == 0:
        return " ".join(w for j, w in enumerate(words) if j % 3 != 1)
    if kind == 1:
        return " ".join(words[len(words) // 2:] + words[:len(words) // 2])
    if kind == 2:
        return "".join(c.upper() if rng.random() < 0.2 else c for c in sentence)
    if kind == 3:
        return "".join(rng.choice("aeiou") if c in "aeiou" and rng.random() < 0.3 else c for c in sentence)
    if kind == 4:
        return rng.choice(others)
    if kind == 5:
        return sentence
    return "  ".join(words[: max(1, len(words) // 4)])


def main():
    reviews = [r["text"].strip() for r in json.load(open(os.path.join(SENTIMENT, "imdb.json"), encoding="utf8"))]
    rng = random.Random(0)
    refs = reviews[:60]
    pairs = [[perturb(rng, s, reviews[100:200]), s] for s in refs]
    pairs += [["", refs[0]], [refs[1], "a"], ["x", "x"], ["café crème", "cafe creme"], ["naïve\tfilm\n", "naïve film"], ["positive", "negative"]]
    sentences = [{"hypothesis": h, "reference": r, "statistics": statistics(h, r), "chrF": score(statistics(h, r))} for h, r in pairs]
    total = [sum(col) for col in zip(*(s["statistics"] for s in sentences))]
    fixture = {"sentences": sentences, "corpus": {"statistics": total, "chrF": score(total)}}
    with open(OUT + ".tmp", "w", encoding="utf8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=1)
    os.replace(OUT + ".tmp", OUT)
    print(f"{len(sentences)} pairs, corpus chrF {fixture['corpus']['chrF']:.4f} -> {OUT}")


if __name__ == "__main__":
    main()
