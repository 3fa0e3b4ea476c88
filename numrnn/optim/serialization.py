"""An optimiser in a numrnn file: its JSON config and its state arrays, both ways.

:func:`numrnn.io.save` and the forecasters' ``save`` store an optimiser as a JSON part (type,
hyperparameters, step count, slot names) and named state arrays ``<prefix>/<slot>/<parameter>``;
:func:`check_optimizer_arrays` checks them against the model's parameters before anything is
built, and :func:`optimizer_from_arrays` rebuilds the optimiser.  No pickle.
"""

from __future__ import annotations

from numrnn import _validation as check
from numrnn.optim.optimizers import SGD, Adam, AdamW

__all__ = ["check_optimizer_arrays", "loadable_optimizers", "optimizer_from_arrays", "optimizer_to_arrays"]


def check_optimizer_arrays(config, params, arrays, prefix):
    """Check an optimiser's saved config and state arrays before it is built.

    Each state array must belong to one of ``params`` (``state_dict`` name -> array) and have its
    shape and dtype.  Returns the names of the state arrays.
    """
    if not isinstance(config, dict):
        raise ValueError(f"the optimiser config must be a dict, got {type(config).__name__}")
    if config.get("type") not in [c.__name__ for c in loadable_optimizers()]:
        raise ValueError(f"unknown optimiser type {config.get('type')!r}")
    if not isinstance(config.get("config"), dict):
        raise ValueError(f"the optimiser's config must be a dict, got {type(config.get('config')).__name__}")
    steps = config.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"the optimiser's steps must be an int >= 0, got {steps!r}")
    slots = config.get("slots")
    if not isinstance(slots, dict):
        raise ValueError(f"the optimiser's slots must be a dict, got {type(slots).__name__}")
    names = set()
    for key, slot_names in slots.items():
        if key not in params:
            raise ValueError(f"the optimiser has state for {key!r}, which the model does not have")
        if not isinstance(slot_names, list) or not all(isinstance(slot, str) for slot in slot_names):
            raise ValueError(f"the optimiser's slot names must be str, got {slot_names!r} for {key!r}")
        for slot in slot_names:
            name = f"{prefix}/{slot}/{key}"
            check.expect_array(arrays, name, params[key].shape, params[key].dtype)
            names.add(name)
    return names


def loadable_optimizers():
    """The optimiser classes a file can rebuild: SGD, Adam and AdamW."""
    return (SGD, Adam, AdamW)


def optimizer_to_arrays(optimizer, prefix="optim"):
    """Split an optimiser's state_dict into a JSON part and named arrays.

    Only the optimisers that :func:`numrnn.io.load` rebuilds (SGD, Adam, AdamW) are saved: any other
    is refused here, so that no file is written that cannot be loaded back.
    """
    if type(optimizer) not in loadable_optimizers():
        names = ", ".join(c.__name__ for c in loadable_optimizers())
        raise TypeError(
            f"optimizer must be one of {names} (the optimisers io.load rebuilds) or None, got "
            f"{type(optimizer).__name__}; save the model alone with optimizer=None"
        )
    sd = optimizer.state_dict()
    arrays = {}
    slots = {}
    for key, st in sd["state"].items():
        slots[key] = sorted(st)
        for slot, arr in st.items():
            arrays[f"{prefix}/{slot}/{key}"] = arr
    config = {"type": sd["type"], "config": sd["config"], "steps": sd["steps"], "slots": slots}
    return config, arrays


def optimizer_from_arrays(config, arrays, prefix="optim"):
    """The optimiser :func:`optimizer_to_arrays` described, rebuilt (after
    :func:`check_optimizer_arrays`)."""
    cls = {c.__name__: c for c in loadable_optimizers()}.get(config["type"])
    if cls is None:
        raise ValueError(f"unknown optimiser type {config['type']!r}")
    state = {}
    for key, slots in config["slots"].items():
        state[key] = {slot: arrays[f"{prefix}/{slot}/{key}"] for slot in slots}
    opt = cls(**config["config"])
    opt.load_state_dict({"type": config["type"], "config": config["config"], "steps": config["steps"], "state": state})
    return opt
