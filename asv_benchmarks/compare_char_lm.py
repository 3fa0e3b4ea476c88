"""A character-level language model's training step, numrnn against PyTorch, side by side.

The model of ``examples/char_lm.py``: Embedding(V, E) -> LSTM(E, H) -> Linear(H, V), mean
cross-entropy on integer targets, truncated BPTT over chunks of ``--bptt`` steps, gradient
norm clipping at 0.25 and Adam, in float32.  Both frameworks start from the same weights
(numrnn's, copied into torch), run the same chunks of the same token sequence, and are timed
in alternation (one pass over the sequence each, ``--repeats`` times); the report is the
median wall and CPU seconds of one chunk's step (forward, loss, backward, clip, Adam) and the
ratio.  The losses of the first pass are printed for both, as a check that they train the
same model (float32: they agree to about 1e-5).

Run: ``python asv_benchmarks/compare_char_lm.py`` (``--help`` for the sizes).
"""

from __future__ import annotations

import argparse
import statistics
import time

import os

os.environ.setdefault("NUMRNN_FIRST_USE", "compile")  # time the compiled kernels (on first use they compile here)

import numpy as np


def numrnn_model(vocab, embed, hidden, seed=0):
    import numrnn
    from numrnn import nn

    return nn.Sequential(nn.Embedding(vocab, embed, seed=seed), numrnn.LSTM(embed, hidden, seed=seed + 1),
                         nn.Linear(hidden, vocab, seed=seed + 2))


def torch_model(torch, model):
    """The torch twin of ``model`` (Embedding, LSTM, Linear), holding the same weights."""
    embed, rnn, head = model.modules
    tm = torch.nn.ModuleDict({
        "embed": torch.nn.Embedding(embed.num_embeddings, embed.embedding_dim),
        "rnn": torch.nn.LSTM(rnn.input_size, rnn.hidden_size),
        "head": torch.nn.Linear(head.in_features, head.out_features),
    })
    with torch.no_grad():
        for name, value in model.state_dict().items():
            index, key = name.split(".", 1)
            target = tm[["embed", "rnn", "head"][int(index)]]
            getattr(target, key).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return tm


def numrnn_pass(model, x, target, bptt, state):
    """One TBPTT pass; returns the chunks' mean losses."""
    from numrnn import train
    from numrnn.losses import CrossEntropyLoss

    loss, _ = train.tbptt(model, x, target, bptt, loss=CrossEntropyLoss(), optimizer=state["opt"], clip_norm=0.25)
    return loss


def torch_pass(torch, tm, opt, x, target, bptt):
    losses = []
    hidden = None
    for start in range(0, x.shape[0], bptt):
        xs, ts = x[start : start + bptt], target[start : start + bptt]
        opt.zero_grad()
        out, hidden = tm["rnn"](tm["embed"](xs), hidden)
        hidden = tuple(h.detach() for h in hidden)
        logits = tm["head"](out)
        value = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ts.reshape(-1))
        value.backward()
        torch.nn.utils.clip_grad_norm_(tm.parameters(), 0.25)
        opt.step()
        losses.append(float(value))
    return float(np.mean(losses))


def run(args):
    import torch

    from numrnn.optim import Adam

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    steps = args.bptt * args.chunks
    codes = rng.integers(0, args.vocab, size=(steps + 1, args.batch))
    x, target = codes[:-1].astype(np.int64), codes[1:].astype(np.int64)
    model = numrnn_model(args.vocab, args.embed, args.hidden)
    tm = torch_model(torch, model)
    state = {"opt": Adam(lr=3e-3)}
    topt = torch.optim.Adam(tm.parameters(), lr=3e-3)
    tx, tt = torch.from_numpy(x), torch.from_numpy(target)
    first = (numrnn_pass(model, x, target, args.bptt, state), torch_pass(torch, tm, topt, tx, tt, args.bptt))
    times = {"numrnn": ([], []), "torch": ([], [])}
    runs = {"numrnn": lambda: numrnn_pass(model, x, target, args.bptt, state),
            "torch": lambda: torch_pass(torch, tm, topt, tx, tt, args.bptt)}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name][0].append((time.perf_counter() - w0) / args.chunks)
            times[name][1].append((time.process_time() - c0) / args.chunks)
    med = {k: (statistics.median(w), statistics.median(c)) for k, (w, c) in times.items()}
    print(f"char LM step: vocab {args.vocab}, embed {args.embed}, hidden {args.hidden}, batch {args.batch}, "
          f"bptt {args.bptt}; torch {torch.__version__} with {args.threads} thread(s); {args.repeats} alternated passes "
          f"of {args.chunks} chunks")
    print(f"first-pass mean loss: numrnn {first[0]:.6f}, torch {first[1]:.6f}")
    print("| framework | wall ms / step | CPU ms / step |")
    print("|---|---:|---:|")
    for name, (w, c) in med.items():
        print(f"| {name} | {1e3 * w:.2f} | {1e3 * c:.2f} |")
    print(f"numrnn speed-up over torch (median wall): {med['torch'][0] / med['numrnn'][0]:.2f}x; "
          f"CPU: {med['torch'][1] / med['numrnn'][1]:.2f}x")
    return med


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=40)
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--chunks", type=int, default=20, help="chunks per timed pass")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (numrnn uses Numba's)")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
