"""Independent reference tokenizers for the GGUF vocabularies kvinfer meets.

* tokenizer.ggml.model == "llama": SentencePiece-style BPE driven by token
  scores.  Text gets a leading " " (tokenizer.ggml.add_space_prefix, default
  true), spaces become U+2581, the text is split into characters, and then
  the adjacent pair with the highest score whose concatenation is a token is
  merged, again and again (leftmost pair on equal scores).  Characters that
  are not tokens become byte tokens "<0xXX>" of their UTF-8 bytes.
* tokenizer.ggml.model == "gpt2": byte-level BPE.  Pre-tokenize with a regex
  (pre "smollm" first isolates every \\p{N} character), map each UTF-8 byte
  to a printable code point (GPT-2's bytes_to_unicode), then merge the
  adjacent pair with the lowest rank in tokenizer.ggml.merges, repeatedly.

Special (CONTROL / USER_DEFINED) tokens written literally in the text are
recognised as single tokens when parse_special is true (the default here).
BOS is prepended when tokenizer.ggml.add_bos_token says so (default: true for
"llama", false for "gpt2").
"""

import regex

import numpy as np

TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_USER_DEFINED, TT_UNUSED, TT_BYTE = 1, 2, 3, 4, 5, 6

GPT2_PATTERN = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
                r"|\s+(?!\S)|\s+")
SPACE = "\u2581"


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character table."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
            + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class Tokenizer:
    def __init__(self, g):
        md = g.metadata
        self.model = md["tokenizer.ggml.model"]
        self.tokens = list(md["tokenizer.ggml.tokens"])
        self.ids = {}
        for i, t in enumerate(self.tokens):
            self.ids.setdefault(t, i)
        n = len(self.tokens)
        tt = md.get("tokenizer.ggml.token_type")
        self.types = np.asarray(tt) if tt is not None else np.full(n, TT_NORMAL)
        self.bos = md.get("tokenizer.ggml.bos_token_id")
        self.eos = md.get("tokenizer.ggml.eos_token_id")
        self.add_bos = bool(md.get("tokenizer.ggml.add_bos_token", self.model == "llama"))
        self.add_space_prefix = bool(md.get("tokenizer.ggml.add_space_prefix", self.model == "llama"))
        self.pre = md.get("tokenizer.ggml.pre", "default")
        # Special tokens matched literally in text; longest first.
        self.specials = sorted((self.tokens[i] for i in range(n)
                                if self.types[i] in (TT_CONTROL, TT_USER_DEFINED) and self.tokens[i]),
                               key=len, reverse=True)
        if self.model == "llama":
            self.scores = np.asarray(md["tokenizer.ggml.scores"], dtype=np.float64)
        elif self.model == "gpt2":
            self.ranks = {}
            for r, m in enumerate(md["tokenizer.ggml.merges"]):
                a, b = m.split(" ", 1)
                self.ranks.setdefault((a, b), r)
            self.b2u = bytes_to_unicode()
            self.u2b = {u: b for b, u in self.b2u.items()}
        else:
            raise ValueError("unsupported tokenizer model %r" % self.model)

    # ------------------------------------------------------------ public
    def encode(self, text, add_bos=None, parse_special=True):
        out = []
        if add_bos is None:
            add_bos = self.add_bos
        if add_bos and self.bos is not None:
            out.append(int(self.bos))
        first = True
        for frag, is_special in self._split_special(text, parse_special):
            if is_special:
                out.append(self.ids[frag])
            elif self.model == "llama":
                # Space prefix only at the very start of the text.
                out += self._spm(frag, prefix=self.add_space_prefix and first)
            else:
                out += self._bpe_text(frag)
            first = False
        return out

    def decode(self, ids):
        if self.model == "llama":
            bs = bytearray()
            for i in ids:
                t = self.tokens[i]
                if self.types[i] == TT_BYTE and len(t) == 6 and t.startswith("<0x"):
                    bs.append(int(t[3:5], 16))
                elif self.types[i] in (TT_CONTROL, TT_UNKNOWN):
                    continue
                else:
                    bs += t.replace(SPACE, " ").encode("utf-8")
            return bs.decode("utf-8", errors="replace")
        bs = bytearray()
        for i in ids:
            t = self.tokens[i]
            if self.types[i] in (TT_CONTROL, TT_USER_DEFINED):
                bs += t.encode("utf-8")
            else:
                bs += bytes(self.u2b[ch] for ch in t)
        return bs.decode("utf-8", errors="replace")

    # ------------------------------------------------------------ internals
    def _split_special(self, text, parse_special):
        if not parse_special or not self.specials:
            if text:
                yield text, False
            return
        i, start = 0, 0
        while i < len(text):
            hit = None
            for s in self.specials:
                if text.startswith(s, i):
                    hit = s
                    break
            if hit is None:
                i += 1
                continue
            if i > start:
                yield text[start:i], False
            yield hit, True
            i += len(hit)
            start = i
        if start < len(text):
            yield text[start:], False

    def _spm(self, text, prefix):
        if prefix:
            text = " " + text
        text = text.replace(" ", SPACE)
        syms = list(text)
        while len(syms) > 1:
            best, best_i = None, -1
            for i in range(len(syms) - 1):
                tid = self.ids.get(syms[i] + syms[i + 1])
                if tid is None:
                    continue
                sc = self.scores[tid]
                if best is None or sc > best:       # strict: leftmost wins ties
                    best, best_i = sc, i
            if best_i < 0:
                break
            syms[best_i:best_i + 2] = [syms[best_i] + syms[best_i + 1]]
        out = []
        for s in syms:
            tid = self.ids.get(s)
            if tid is not None:
                out.append(tid)
            else:
                for b in s.encode("utf-8"):
                    out.append(self.ids["<0x%02X>" % b])
        return out

    def _pretokenize(self, text):
        if self.pre in ("smollm",):
            pieces = []
            pos = 0
            for m in regex.finditer(r"\p{N}", text):
                if m.start() > pos:
                    pieces.append(text[pos:m.start()])
                pieces.append(m.group())
                pos = m.end()
            if pos < len(text):
                pieces.append(text[pos:])
        elif self.pre in ("default", "gpt-2", "gpt2"):
            pieces = [text]
        else:
            raise ValueError("unsupported pre-tokenizer %r" % self.pre)
        words = []
        for p in pieces:
            words += regex.findall(GPT2_PATTERN, p)
        return words

    def _bpe_word(self, word):
        syms = [self.b2u[b] for b in word.encode("utf-8")]
        while len(syms) > 1:
            best, best_i = None, -1
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best):
                    best, best_i = r, i
            if best_i < 0:
                break
            syms[best_i:best_i + 2] = [syms[best_i] + syms[best_i + 1]]
        out = []
        for s in syms:
            tid = self.ids.get(s)
            if tid is not None:
                out.append(tid)
            else:  # not expected with a consistent vocab; fall back per character
                out += [self.ids[ch] for ch in s]
        return out

    def _bpe_text(self, text):
        out = []
        for w in self._pretokenize(text):
            out += self._bpe_word(w)
        return out


def _run_vectors(gguf_path):
    """Checks against llama.cpp's stored tokenizer test vectors (no BOS)."""
    from gguf_reader import GGUFFile
    tok = Tokenizer(GGUFFile(gguf_path))
    with open(gguf_path + ".inp", encoding="utf-8") as f:
        inputs = f.read().split("\n__ggml_vocab_test__\n")
    if inputs and inputs[-1] == "":   # the file ends with a separator
        inputs.pop()
    with open(gguf_path + ".out", encoding="utf-8") as f:
        outputs = f.read().split("\n")
    bad = 0
    for i, text in enumerate(inputs):
        want = [int(x) for x in outputs[i].split()]
        got = tok.encode(text, add_bos=False, parse_special=False)
        if got != want:
            bad += 1
            print("MISMATCH #%d %r\n  want %s\n  got  %s" % (i, text[:60], want[:20], got[:20]))
    print("%s: %d/%d vectors match" % (gguf_path.split("/")[-1], len(inputs) - bad, len(inputs)))
    return bad


if __name__ == "__main__":
    import sys
    base = "/work/shared/models/tokenizers/llamacpp-vocab/"
    paths = sys.argv[1:] or [base + "ggml-vocab-llama-spm.gguf", base + "ggml-vocab-gpt-2.gguf"]
    sys.exit(1 if sum(_run_vectors(p) for p in paths) else 0)
