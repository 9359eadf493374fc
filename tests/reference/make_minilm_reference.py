"""Make the reference numbers for the MiniLM numerical-parity test.

What it computes
----------------
Hugging Face's own PyTorch ``BertModel`` is run on the all-MiniLM-L6-v2
checkpoint (Hugging Face BERT format: config.json, model.safetensors,
vocab.txt, tokenizer.json) over four fixed sentences, padded together to the
batch's longest sentence. The tokenizer is ``BertTokenizerFast`` loaded from the
same folder. The model runs in eval mode, float32, with 2 CPU threads.

It writes ``minilm_reference.npz`` with:

* ``sentences``         str   [4]
* ``input_ids``         int32 [4, T]
* ``attention_mask``    int32 [4, T]
* ``token_type_ids``    int32 [4, T]
* ``last_hidden_state`` float32 [4, T, 384]
* ``pooler_output``     float32 [4, 384]
* ``versions``          str (torch, transformers, tokenizers, numpy versions)

This script is NOT run by the test suite (which needs no torch); it is kept so
the committed .npz can be regenerated.

How it was run
--------------
In a separate venv outside the repo (never the project's venv)::

    python3 -m venv /work/refvenv
    /work/refvenv/bin/pip install torch==2.13.0   # CPU wheel, first
    /work/refvenv/bin/pip install transformers safetensors numpy
    /work/refvenv/bin/python tests/reference/make_minilm_reference.py \\
        --folder ~/.cache/ktransfer/minilm \\
        --output tests/reference/minilm_reference.npz

Versions used: Python 3.11.7, torch 2.13.0+cpu, transformers 5.23.0,
tokenizers 0.23.3, safetensors 0.8.0, numpy 2.4.6.

The checkpoint folder can be obtained with
``python -m ktransfer.assets fetch minilm``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

SENTENCES = [
    "a great film , full of heart .",
    "the plot is thin and the acting wooden .",
    "Unflinchingly bleak and desperate!",
    "It's a charming and often affecting journey; I loved it.",
]

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--folder",
        default=os.path.expanduser("~/.cache/ktransfer/minilm"),
        help="Hugging Face BERT-format checkpoint folder.",
    )
    parser.add_argument(
        "--output",
        default=os.path.join(HERE, "minilm_reference.npz"),
        help="Where to write the .npz.",
    )
    args = parser.parse_args(argv)

    import tokenizers
    import torch
    import transformers
    from transformers import BertModel, BertTokenizerFast

    torch.set_num_threads(2)
    torch.manual_seed(0)

    tokenizer = BertTokenizerFast.from_pretrained(args.folder)
    model = BertModel.from_pretrained(args.folder, torch_dtype=torch.float32)
    model = model.float().eval()

    enc = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            token_type_ids=enc["token_type_ids"],
        )

    versions = (
        f"torch={torch.__version__} transformers={transformers.__version__} "
        f"tokenizers={tokenizers.__version__} numpy={np.__version__}"
    )
    arrays = dict(
        sentences=np.array(SENTENCES, dtype=str),
        input_ids=enc["input_ids"].numpy().astype(np.int32),
        attention_mask=enc["attention_mask"].numpy().astype(np.int32),
        token_type_ids=enc["token_type_ids"].numpy().astype(np.int32),
        last_hidden_state=out.last_hidden_state.numpy().astype(np.float32),
        pooler_output=out.pooler_output.numpy().astype(np.float32),
        versions=np.array(versions),
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    print(f"wrote {args.output} ({os.path.getsize(args.output)} bytes)")
    for key, value in arrays.items():
        print(f"  {key}: {value.dtype} {value.shape}")
    print(f"  {versions}")


if __name__ == "__main__":
    main()
