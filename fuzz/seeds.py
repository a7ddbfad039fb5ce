#!/usr/bin/env python3
"""Writes small valid seed inputs (or a libFuzzer dictionary) for a fuzz target.

    seeds.py TARGET OUT_DIR          seeds for TARGET into OUT_DIR
    seeds.py TARGET-dict OUT_FILE    the dictionary for TARGET

Input formats (see docs/fuzzing.md): llama2c_fuzz takes a selector byte
(even: checkpoint, odd: tokenizer.bin) then the file; tokenizer_fuzz takes a
selector byte (even: tokenizer.json, odd: vocab.json + merges.txt) then the
two files joined by one 0x00 byte; batch_request_fuzz takes one JSON line.
"""
import json
import os
import struct
import sys


def write(out, name, data):
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(data)


def checkpoint(dim, hidden, layers, heads, kv_heads, vocab, seq_len):
    head_dim = dim // heads
    kv_dim = head_dim * kv_heads
    per_layer = 2 * dim + 2 * dim * dim + 2 * kv_dim * dim + 3 * hidden * dim
    n = abs(vocab) * dim + layers * per_layer + dim + 2 * seq_len * (head_dim // 2)
    if vocab < 0:
        n += abs(vocab) * dim
    header = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq_len)
    floats = struct.pack("<%df" % n, *[(i % 7) * 0.125 - 0.375 for i in range(n)])
    return header + floats


def llama2c_tokenizer(pieces):
    out = struct.pack("<i", max(len(p) for p in pieces))
    for i, p in enumerate(pieces):
        out += struct.pack("<fi", -float(i), len(p)) + p
    return out


def byte_chars():
    """GPT-2's byte -> printable character table."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def seeds(target, out):
    if target == "llama2c_fuzz":
        write(out, "ckpt-shared", b"\x00" + checkpoint(8, 16, 1, 2, 2, 16, 4))
        write(out, "ckpt-wcls", b"\x00" + checkpoint(8, 12, 2, 4, 2, -10, 2))
        pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % i for i in range(8)] + \
            [b" ", b"a", b"b", b" a", b"ab", b"\xe2\x96\x81"]
        write(out, "tok", b"\x01" + llama2c_tokenizer(pieces))
    elif target == "tokenizer_fuzz":
        chars = byte_chars()
        vocab = {c: i for i, c in enumerate(chars)}
        merges = ["\u0120 t", "h e", "\u0120t he", "l l", "ll o"]
        for m in merges:
            vocab.setdefault(m.replace(" ", ""), len(vocab))
        vocab["<|endoftext|>"] = len(vocab)
        tj = {"model": {"type": "BPE", "vocab": vocab, "merges": merges},
              "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False},
              "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>",
                                "special": True}]}
        cfg = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": False}
        enc = lambda o: json.dumps(o, ensure_ascii=False).encode()
        write(out, "hf-json", b"\x00" + enc(tj) + b"\x00" + enc(cfg))
        write(out, "hf-json-nocfg", b"\x00" + enc(tj))
        merges_txt = "#version: 0.2\n" + "\n".join(merges) + "\n"
        write(out, "vocab-merges", b"\x01" + enc(vocab) + b"\x00" + merges_txt.encode())
        write(out, "hf-json-hello", b"\x00" + enc(tj) + b"\x00{}\x00 hello the world")
    elif target == "batch_request_fuzz":
        lines = [{"prompt": "Once upon a time"},
                 {"prompt": "hi", "max_tokens": 16, "temperature": 0.7, "top_k": 40,
                  "top_p": 0.9, "seed": 7, "ignore_eos": True, "chat": False},
                 {"prompt": "\u00e9\u4e2d", "chat": True, "max_tokens": 0}]
        for i, line in enumerate(lines):
            write(out, "line%d" % i, json.dumps(line, ensure_ascii=False).encode())
    elif target == "openai_request_fuzz":
        # First byte: 0 completions, 1 chat, 2 tokenize, 3 detokenize.
        bodies = [
            (0, {"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0}),
            (0, {"prompt": ["a", "b"], "n": 2, "stop": ["\n", "."], "logprobs": 3, "echo": True,
                 "stream": True, "stream_options": {"include_usage": True}, "seed": -5}),
            (0, {"prompt": [[1, 2, 3], [4]], "top_k": -1, "min_p": 0.1, "repetition_penalty": 1.2,
                 "presence_penalty": -2, "frequency_penalty": 2, "ignore_eos": True}),
            (1, {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                 "logprobs": True, "top_logprobs": 2, "max_completion_tokens": 4}),
            (1, {"messages": [{"role": "assistant", "content": None}], "tools": [],
                 "response_format": {"type": "text"}}),
            (2, {"prompt": "hello", "add_special_tokens": False}),
            (2, {"messages": [{"role": "user", "content": "x"}], "add_generation_prompt": True}),
            (3, {"tokens": [1, 2, 2147483647]}),
        ]
        for i, (kind, body) in enumerate(bodies):
            write(out, "body%d" % i, bytes([kind]) + json.dumps(body, ensure_ascii=False).encode())
    else:
        sys.exit("seeds.py: unknown target " + target)


DICTS = {
    "llama2c_fuzz": ['"\\x00\\x00\\x00\\x00"', '"\\xff\\xff\\xff\\xff"', '"\\x00\\x01\\x00\\x00"',
                     '"\\xf6\\xff\\xff\\xff"', '"\\x0A<s>\\x0A"', '"<0x0A>"'],
    "tokenizer_fuzz": ['"model"', '"type"', '"BPE"', '"vocab"', '"merges"', '"added_tokens"',
                       '"special"', '"content"', '"id"', '"pre_tokenizer"', '"ByteLevel"',
                       '"Sequence"', '"Split"', '"Digits"', '"byte_fallback"', '"bos_token"',
                       '"eos_token"', '"unk_token"', '"add_bos_token"', '"post_processor"',
                       '"TemplateProcessing"', '"SpecialToken"', '"\\x00"', '"#version"'],
    "batch_request_fuzz": ['"prompt"', '"max_tokens"', '"temperature"', '"top_k"', '"top_p"',
                           '"seed"', '"ignore_eos"', '"chat"', '"true"', '"1e308"',
                           '"18446744073709551615"', '"-1"', '"\\\\u0000"'],
    "openai_request_fuzz": ['"prompt"', '"messages"', '"role"', '"content"', '"max_tokens"',
                            '"temperature"', '"top_p"', '"n"', '"stop"', '"seed"', '"logprobs"',
                            '"top_logprobs"', '"stream"', '"stream_options"', '"include_usage"',
                            '"tokens"', '"tools"', '"best_of"', '"null"', '"1e308"',
                            '"18446744073709551615"', '"-9223372036854775808"', '"\\\\u0000"'],
}

if __name__ == "__main__":
    target, out = sys.argv[1], sys.argv[2]
    if target.endswith("-dict"):
        with open(out, "w") as f:
            f.write("\n".join(DICTS[target[:-5]]) + "\n")
    else:
        seeds(target, out)
