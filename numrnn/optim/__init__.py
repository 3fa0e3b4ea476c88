r"""Optimisers that update parameter dicts in place, and gradient clipping.

An optimiser holds hyperparameters and per-parameter state keyed by parameter *name*; it does
not keep references to the arrays, so a module whose arrays are replaced (``load_state_dict``)
keeps working::

    opt = Adam(lr=1e-3)
    for x, target in batches:
        model.zero_grad()
        value, grad = loss(model(x), target)
        model.backward(grad)
        clip_grad_norm(model.grads, 1.0)
        opt.step(model.params, model.grads)     # updates model.params' arrays in place

The update rules are PyTorch's (``torch.optim.SGD``, ``Adam``, ``AdamW``) and give the same
numbers.  Every call validates first (same keys, shapes, finite gradients) and mutates nothing
when it raises.

Device arrays
-------------
A parameter and its gradient may also be CUDA device arrays (Numba ``DeviceNDArray`` or any
object exposing ``__cuda_array_interface__``), key by key: a model may keep its recurrent layers
on the GPU and a linear head on the host.  Device keys are validated and updated on the device
(:mod:`numrnn.backends.cuda.optim`), their optimiser state lives there too, and only single
scalars (a count of NaN/inf entries, a norm) come back to the host.

Every update is written once, as a plain scalar rule (:func:`sgd_rule`, :func:`adam_rule`,
:func:`clamp_rule`, in the leaf module :mod:`numrnn.optim.rules`) of arithmetic operators and
``sqrt``.  The NumPy path calls the rule with
whole arrays (broadcasting) and writes the results back in place; the CUDA backend compiles the
same function into a device function, with ``sqrt`` bound to ``math.sqrt``, and applies it per
element.  Hyperparameters and per-step scalars (bias corrections, ``1 - beta``) are computed once
on the host and passed in.

The package: :mod:`numrnn.optim.rules` (the scalar rules, a leaf module),
:mod:`numrnn.optim.optimizers` (:class:`Optimizer`, :class:`SGD`, :class:`Adam`, :class:`AdamW`,
:func:`get_optimizer`), :mod:`numrnn.optim.lbfgs` (:class:`LBFGS`) and :mod:`numrnn.optim.clip`
(:func:`clip_grad_norm`, :func:`clip_grad_value`).
"""

from numrnn.optim.clip import clip_grad_norm, clip_grad_value
from numrnn.optim.lbfgs import LBFGS
from numrnn.optim.optimizers import OPTIMIZERS, SGD, Adam, AdamW, Optimizer, get_optimizer
from numrnn.optim.rules import adam_rule, clamp_rule, sgd_rule  # noqa: F401  (numrnn.optim.sgd_rule etc.)

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "LBFGS",
    "OPTIMIZERS",
    "get_optimizer",
    "clip_grad_norm",
    "clip_grad_value",
]
