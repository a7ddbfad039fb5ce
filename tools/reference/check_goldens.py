#!/usr/bin/python3
"""Re-derives the stored goldens of the small models with the NumPy reference
and checks they still match what is in tests/goldens/ (tokens exactly, logits
to 1e-9 relative). It guards the goldens themselves: a hand-edited or stale
golden fails here, before the C++ tests compare against it.

  /usr/bin/python3 tools/reference/check_goldens.py [NAME ...]

Default: tiny-random and stories260K (seconds); the SmolLM2 goldens can be
named explicitly (minutes).
"""

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from gguf_reader import GGUFFile  # noqa: E402
from llama_ref import Llama, run  # noqa: E402
from tokenize_ref import Tokenizer  # noqa: E402

REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
GOLDENS = os.path.join(REPO, "tests", "goldens")
MODELS = {
    "tiny-random": os.path.join(GOLDENS, "tiny-random.gguf"),
    "stories260K": os.path.join(REPO, "..", "shared", "models", "stories260K", "stories260K.gguf"),
    "smollm2-135m-q4_1": os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "smollm2-135m-q4_1-chat": os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def check(name):
    path = MODELS[name]
    if not os.path.exists(path):
        print("check_goldens: SKIP %s: %s is missing (run ./scripts/setup.sh, or check out "
              "../shared beside the repository)" % (name, path))
        return True
    with open(os.path.join(GOLDENS, name + ".json")) as f:
        meta = json.load(f)
    g = GGUFFile(path)
    prompt = meta["prompt_tokens"]
    if meta.get("prompt") is not None:
        tok = Tokenizer(g)
        if tok.encode(meta["prompt"]) != prompt:
            print("check_goldens: FAIL %s: the reference tokenizer no longer gives the stored "
                  "prompt tokens" % name)
            return False
    # Goldens made before int8 activations existed have no "activations" key: f32.
    model = Llama(g, np.float64, int8_activations=meta.get("activations", "f32") == "int8")
    n_gen = len(meta["greedy_tokens"])
    logits, gen = run(model, prompt, n_gen)
    ok = gen == meta["greedy_tokens"]
    stored = np.fromfile(os.path.join(GOLDENS, meta["logits_file"]), dtype="<f4").reshape(
        len(meta["logit_positions"]), meta["vocab_size"])
    mine = logits[meta["logit_positions"]].astype(np.float32)
    diff = float(np.abs(mine - stored).max())
    ok = ok and diff <= 1e-6 * max(1.0, meta["max_abs_logit"])
    print("check_goldens: %s %s: %d greedy tokens %s, logits max abs diff %.3g"
          % ("PASS" if ok else "FAIL", name, n_gen,
             "equal" if gen == meta["greedy_tokens"] else "DIFFER", diff))
    return ok


def main():
    names = sys.argv[1:] or ["tiny-random", "stories260K"]
    for n in names:
        if n not in MODELS:
            sys.exit("check_goldens: unknown golden '%s' (known: %s)" % (n, ", ".join(MODELS)))
    results = [check(n) for n in names]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
