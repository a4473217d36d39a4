"""Module configs: dicts checked against attention.v1 ModuleConfig.

A config is a dict with ModuleConfig's field names (snake_case, as in the
proto), e.g. ``{"d_model": 64, "gqa": {"num_q_heads": 8, "num_kv_heads": 2},
"bias": False}``. :func:`module_config` turns it into the message and raises
:class:`ConfigError` naming the field ("gqa.num_q_head") for an unknown field,
a value of the wrong type, or two variants at once; the value ranges (d_model
divisible by the heads...) are checked by the server.
"""

import difflib
import numbers

import numpy as np

from ._gen.attention.v1 import attention_pb2 as pb2


class ConfigError(ValueError):
    """A config dict that does not fit ModuleConfig; `.field` is the
    snake_case path of the offending field ("gqa.num_q_heads")."""

    def __init__(self, field, message):
        self.field = field
        super().__init__("%s: %s" % (field, message))


def module_config(config):
    """A ModuleConfig from a dict (or a ModuleConfig, returned as is).

    Raises ConfigError naming the field for unknown fields, wrong types and
    more than one of self_attention / mha / gqa / mqa / mla; TypeError if
    `config` is neither a dict nor a ModuleConfig.
    """
    if isinstance(config, pb2.ModuleConfig):
        return config
    if not isinstance(config, dict):
        raise TypeError("config must be a dict or an attention.v1 ModuleConfig, got %r"
                        % type(config).__name__)
    msg = pb2.ModuleConfig()
    _fill(msg, config, "")
    return msg


def _fill(msg, values, prefix):
    fields = msg.DESCRIPTOR.fields_by_name
    oneofs = {}
    for key, value in values.items():
        path = prefix + str(key)
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            raise ConfigError(path, "no such field in %s%s (fields: %s)"
                              % (msg.DESCRIPTOR.name, _suggestion(key, msg.DESCRIPTOR),
                                 ", ".join(sorted(fields))))
        oneof = field.containing_oneof
        if oneof is not None and not oneof.name.startswith("_"):  # not proto3 `optional`
            if oneof.name in oneofs:
                raise ConfigError(path, "%s is already set; give exactly one %s of %s"
                                  % (oneofs[oneof.name], oneof.name,
                                     ", ".join(f.name for f in oneof.fields)))
            oneofs[oneof.name] = path
        _set(msg, field, value, path)


def _suggestion(key, descriptor):
    """ "; did you mean num_q_heads?" for numQHeads or num_q_head, else ""."""
    if not isinstance(key, str):
        return ""
    names = {f.json_name: f.name for f in descriptor.fields}
    names.update((f.name, f.name) for f in descriptor.fields)
    close = difflib.get_close_matches(key, list(names), n=1)
    return "; did you mean %s?" % names[close[0]] if close else ""


def _set(msg, field, value, path):
    if field.message_type is not None:
        if not isinstance(value, dict):
            raise ConfigError(path, "expected a dict (%s), got %r"
                              % (field.message_type.name, value))
        sub = getattr(msg, field.name)
        sub.SetInParent()  # an empty dict still selects the variant
        _fill(sub, value, path + ".")
    elif field.type == field.TYPE_BOOL:
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(path, "expected true or false, got %r" % (value,))
        setattr(msg, field.name, bool(value))
    elif field.cpp_type in (field.CPPTYPE_INT32, field.CPPTYPE_INT64,
                            field.CPPTYPE_UINT32, field.CPPTYPE_UINT64):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise ConfigError(path, "expected an integer, got %r" % (value,))
        try:
            setattr(msg, field.name, int(value))
        except ValueError:
            raise ConfigError(path, "%d is out of range" % int(value)) from None
    elif field.cpp_type in (field.CPPTYPE_DOUBLE, field.CPPTYPE_FLOAT):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ConfigError(path, "expected a number, got %r" % (value,))
        setattr(msg, field.name, float(value))
    elif field.enum_type is not None:
        # An enum by its name, with or without the prefix, any case:
        # "DTYPE_INT8", "int8".
        names = {v.name: v.number for v in field.enum_type.values}
        key = value.upper() if isinstance(value, str) else None
        prefix = field.enum_type.values[0].name.split("_")[0] + "_"
        number = names.get(key, names.get(prefix + key)) if key is not None else None
        if number is None:
            raise ConfigError(path, "expected one of %s, got %r"
                              % (", ".join(n[len(prefix):].lower() for n in names
                                           if not n.endswith("UNSPECIFIED")), value))
        setattr(msg, field.name, number)
    else:
        raise ConfigError(path, "fields of this type are not part of a module config")
