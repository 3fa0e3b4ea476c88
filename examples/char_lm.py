"""A character-level language model: Embedding -> LSTM -> Linear, cross-entropy, truncated BPTT.

Trains on a short public-domain text (the opening of Lewis Carroll's "Alice's Adventures in
Wonderland", 1865, written out below), then samples from the model.  The PyTorch word-language
model example in numrnn's building blocks: integer targets, `train.tbptt` with chunks of 35
steps, gradient clipping, Adam.

Run: ``python examples/char_lm.py`` (about a minute on two cores, compile included).
"""

import time

import numpy as np

import numrnn
from numrnn import nn, train
from numrnn.losses import CrossEntropyLoss
from numrnn.optim import Adam

TEXT = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
    "nothing to do: once or twice she had peeped into the book her sister was reading, but it had "
    "no pictures or conversations in it, 'and what is the use of a book,' thought Alice 'without "
    "pictures or conversations?' So she was considering in her own mind (as well as she could, for "
    "the hot day made her feel very sleepy and stupid), whether the pleasure of making a "
    "daisy-chain would be worth the trouble of getting up and picking the daisies, when suddenly a "
    "White Rabbit with pink eyes ran close by her. "
)


def main(epochs=30, batch=8, bptt=35, hidden=128, seed=0):
    chars = sorted(set(TEXT))
    index = {c: i for i, c in enumerate(chars)}
    codes = np.array([index[c] for c in TEXT * 4], dtype=np.int64)
    steps = (len(codes) - 1) // batch
    # batch columns, as PyTorch's example: (T, B) inputs and their next characters
    x = codes[: steps * batch].reshape(batch, steps).T.copy()
    target = codes[1 : steps * batch + 1].reshape(batch, steps).T.copy()

    model = nn.Sequential(
        nn.Embedding(len(chars), 32, seed=seed),
        numrnn.LSTM(32, hidden, seed=seed + 1),
        nn.Linear(hidden, len(chars), seed=seed + 2),
    )
    loss, optimizer = CrossEntropyLoss(), Adam(lr=3e-3)
    start = time.perf_counter()
    for epoch in range(epochs):
        mean_loss, _ = train.tbptt(model, x, target, bptt, loss=loss, optimizer=optimizer, clip_norm=0.25)
        if epoch % 5 == 4 or epoch == 0:
            print(f"epoch {epoch + 1:3d}  loss {mean_loss:.3f}  ({time.perf_counter() - start:.1f} s)")

    # greedy next-character accuracy over the text, and a sample
    model.eval()
    logits = model(x, states=None)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == target))
    print(f"next-character accuracy (greedy, training text): {accuracy:.3f}")
    rnn = model.modules[1]
    embed, head = model.modules[0], model.modules[2]
    rng = np.random.default_rng(seed)
    state, code, out = None, index["A"], ["A"]
    for _ in range(200):
        h, state = rnn.step(embed(np.array([code]))[0], state)
        probs = np.exp(head(h[None])[0] - head(h[None])[0].max())
        code = int(rng.choice(len(chars), p=probs / probs.sum()))
        out.append(chars[code])
    print("sample:", "".join(out))
    return accuracy


if __name__ == "__main__":
    main()
