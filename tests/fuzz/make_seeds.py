#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

Each corpus holds a few valid files and a few that break one rule of the format, so that the
fuzzer starts next to every error path. The real data comes from examples/data (the first
lines only) and tests/fixtures (a few small .npy files, copied byte for byte). Inputs named
regress_* are kept. Only the standard library is used. Run from anywhere: python3 tests/fuzz/make_seeds.py
"""

import pathlib
import shutil
import struct

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent.parent
CORPUS = FUZZ / "corpus"


def reset(target):
    """Empties corpus/<target>/ of the seeds made here; regress_* inputs (faults found and
    fixed, see crashes/README.md) stay."""
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if not path.name.startswith("regress_"):
            path.unlink()
    return folder


def first_lines(path, count):
    with open(path, "rb") as f:
        return b"".join(f.readline() for _ in range(count))


def glove():
    out = reset("glove")
    seeds = {
        "valid_3d.txt": b"the 0.1 -0.2 0.3\nunion 1e-3 2.5 -7\n",
        "valid_1d_no_newline.txt": b"a 1",
        "valid_crlf_trailing_space.txt": b"state 0.5 0.25 \r\nof -1 2 \r\n",
        "valid_float_forms.txt": b"x 1e308 -0 .5\ny 5. 3e+2 -1E-300\n",
        "bad_word2vec_header.txt": b"2 3\nthe 0.1 0.2 0.3\nof 1 2 3\n",
        "bad_dimension.txt": b"the 0.1 0.2 0.3\nof 1 2\n",
        "bad_repeated_word.txt": b"the 1 2\nof 3 4\nthe 5 6\n",
        "bad_not_finite.txt": b"the nan 1\nof inf 2\nbig 1e999 3\n",
        "bad_double_space.txt": b"the  0.1 0.2\n",
        "bad_leading_space.txt": b" the 0.1 0.2\n",
        "bad_empty_line.txt": b"the 0.1 0.2\n\nof 1 2\n",
        "bad_no_components.txt": b"the\n",
    }
    for name, data in seeds.items():
        (out / name).write_bytes(data)
    (out / "sotu_first_2.txt").write_bytes(
        first_lines(ROOT / "examples/data/glove_sotu_100d.txt", 2))


def sentences():
    out = reset("sentences")
    header = b"year\tparty\tera\ttokens\n"
    seeds = {
        "valid_two.tsv": header + b"1862\tRepublican\tpre1900\tfellow citizens .\n"
                         b"1961\tDemocratic\tpost1945\tthe state of the union\n",
        "valid_header_only.tsv": header,
        "valid_crlf_no_newline.tsv": b"year\tparty\tera\ttokens\r\n1801\tnone\tpre1900\ta b\r\n"
                                     b"-5\tx\ty\tz",
        "bad_header.tsv": b"year,party,era,tokens\n1862,Republican,pre1900,a\n",
        "bad_three_fields.tsv": header + b"1862\tRepublican\tpre1900\n",
        "bad_year.tsv": header + b"18x2\tRepublican\tpre1900\ta b\n"
                        b"99999999999\tnone\tpre1900\ta\n",
        "bad_empty_party.tsv": header + b"1862\t\tpre1900\ta b\n",
        "bad_tokens_spaces.tsv": header + b"1862\tnone\tpre1900\ta  b \n1863\tnone\tpre1900\t\n",
        "bad_empty_file.tsv": b"",
    }
    for name, data in seeds.items():
        (out / name).write_bytes(data)
    (out / "sotu_first_3.tsv").write_bytes(
        first_lines(ROOT / "examples/data/sotu_sentences.tsv", 4))


def npy_bytes(header, data, major=1):
    """A .npy file: preamble, header padded with spaces to 64 bytes and a newline, data."""
    preamble = 10 if major == 1 else 12
    text = header.encode("latin-1")
    text += b" " * ((64 - (preamble + len(text) + 1) % 64) % 64) + b"\n"
    length = struct.pack("<H" if major == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([major, 0]) + length + text + data


def npy():
    out = reset("npy")
    fixtures = {
        "fixture_0d_f8.npy": "ln_plain_d8/eps.npy",
        "fixture_0d_i8.npy": "mha_attn_bool_h4/heads.npy",
        "fixture_2d_b1.npy": "mha_attn_bool_h4/attn_mask.npy",
        "fixture_2d_f4.npy": "mha_attn_bool_h4/weights_f32.npy",
        "fixture_2d_f8_column.npy": "ln_d1_affine/input.npy",
    }
    for name, source in fixtures.items():
        shutil.copyfile(ROOT / "tests/fixtures" / source, out / name)

    def dict_(descr, order, shape):
        shape_text = "(" + ", ".join(str(e) for e in shape) + ("," if len(shape) == 1 else "") + ")"
        return "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, order, shape_text)

    f8 = lambda *values: struct.pack("<%dd" % len(values), *values)
    seeds = {
        "valid_1d_f4.npy": npy_bytes(dict_("<f4", "False", [3]), struct.pack("<3f", 1, -2, 0.5)),
        "valid_2d_f8_fortran.npy": npy_bytes(dict_("<f8", "True", [2, 3]), f8(1, 2, 3, 4, 5, 6)),
        "valid_3d_f8.npy": npy_bytes(dict_("<f8", "False", [2, 1, 2]), f8(1, 2, 3, 4)),
        "valid_3d_i8_fortran.npy": npy_bytes(dict_("<i8", "True", [1, 2, 2]),
                                             struct.pack("<4q", 1, -2, 3, 2**62)),
        "valid_v2_1d_b1.npy": npy_bytes(dict_("|b1", "False", [4]), bytes([0, 1, 1, 0]), major=2),
        "valid_empty_2d.npy": npy_bytes(dict_("<f8", "False", [0, 3]), b""),
        "valid_double_quotes.npy": npy_bytes('{"descr": "<f8", "shape": (1,), '
                                             '"fortran_order": False}', f8(7)),
        "bad_truncated_data.npy": npy_bytes(dict_("<f8", "False", [2, 2]), f8(1, 2, 3)),
        "bad_surplus_data.npy": npy_bytes(dict_("<f4", "False", [1]), b"\0" * 8),
        "bad_bool_byte.npy": npy_bytes(dict_("|b1", "False", [2]), bytes([1, 2])),
        "bad_dtype_big_endian.npy": npy_bytes(dict_(">f8", "False", [1]), f8(1)),
        "bad_four_dims.npy": npy_bytes(dict_("|b1", "False", [1, 1, 1, 1]), b"\1"),
        "bad_version_3.npy": npy_bytes(dict_("<f8", "False", [1]), f8(1))[:6] + b"\3\0" +
                             npy_bytes(dict_("<f8", "False", [1]), f8(1))[8:],
        "bad_header_key.npy": npy_bytes("{'descr': '<f8', 'fortran_order': False, "
                                        "'shape': (1,), 'extra': 1, }", f8(1)),
        "bad_huge_extent.npy": npy_bytes(dict_("<f8", "False", [99999999999999999999]), b""),
    }
    for name, data in seeds.items():
        (out / name).write_bytes(data)


if __name__ == "__main__":
    glove()
    sentences()
    npy()
