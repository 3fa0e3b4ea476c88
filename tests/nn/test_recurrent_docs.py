"""help(numrnn.LSTM) shows what the constructor takes: each layer's own docstring lists every
parameter of its constructor, none documented only on the private base."""

import inspect
import pydoc

import pytest

from numrnn.nn.recurrent import GRU, LSTM, RNN, RNNBase


def _parameter_names(cls):
    names = []
    for klass in (cls, RNNBase):
        for name, parameter in inspect.signature(klass.__init__).parameters.items():
            if name != "self" and parameter.kind is not parameter.VAR_KEYWORD and name not in names:
                names.append(name)
    return names


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_help_lists_every_constructor_parameter(cls):
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    names = _parameter_names(cls)
    assert {"input_size", "hidden_size", "num_layers", "bias", "dropout", "seed"} <= set(names)
    for name in names:
        assert f"    {name} :" in cls.__doc__, f"{cls.__name__} does not document {name}"
        assert f"{name} :" in text
    assert "@layer_parameters@" not in cls.__doc__


def test_the_variant_parameters_are_documented_where_they_apply():
    assert "nonlinearity :" in RNN.__doc__ and "nonlinearity :" not in LSTM.__doc__
    assert "reset_after :" in GRU.__doc__ and "reset_after :" not in RNN.__doc__
